import { isIPv4, isIPv6 } from 'node:net';
import { AddressType, MAX_DNS_NAME_LENGTH } from './header-layout.js';
import { BadAddressError } from '../errors.js';

const LABEL = /^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$/;

/** A DNS name the protocol carries: ASCII LDH labels (underscore allowed), 1..253 bytes. */
export function isValidDnsName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_DNS_NAME_LENGTH) return false;
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  return trimmed.split('.').every((label) => LABEL.test(label));
}

export interface EncodedAddress {
  readonly type: AddressType;
  readonly bytes: Buffer;
}

export function encodeAddress(host: string): EncodedAddress {
  if (isIPv4(host)) {
    return { type: AddressType.IPv4, bytes: Buffer.from(host.split('.').map(Number)) };
  }
  if (isIPv6(host)) {
    return { type: AddressType.IPv6, bytes: ipv6ToBytes(host) };
  }
  if (!isValidDnsName(host)) throw new BadAddressError(`'${host}' is neither an IP address nor a valid DNS name`);
  return { type: AddressType.DNS, bytes: Buffer.from(host, 'ascii') };
}

export function decodeAddress(type: number, bytes: Buffer): string {
  switch (type) {
    case AddressType.IPv4:
      if (bytes.length !== 4) throw new BadAddressError(`IPv4 address with length ${bytes.length}`);
      return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
    case AddressType.IPv6: {
      if (bytes.length !== 16) throw new BadAddressError(`IPv6 address with length ${bytes.length}`);
      const groups: string[] = [];
      for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
      return compressIPv6(groups);
    }
    case AddressType.DNS: {
      const name = bytes.toString('latin1');
      if (!isValidDnsName(name)) throw new BadAddressError(`invalid DNS name in header (${bytes.length} bytes)`);
      return name;
    }
    default:
      throw new BadAddressError(`unknown address type ${type}`);
  }
}

function ipv6ToBytes(host: string): Buffer {
  const out = Buffer.alloc(16);
  let text = host;
  // A trailing dotted quad (::ffff:1.2.3.4) becomes two hex groups.
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad?.[1] !== undefined) {
    const p = quad[1].split('.').map(Number);
    text = text.slice(0, -quad[1].length) + `${(((p[0] ?? 0) << 8) | (p[1] ?? 0)).toString(16)}:${(((p[2] ?? 0) << 8) | (p[3] ?? 0)).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(tail === undefined ? 0 : zeros).fill('0'), ...tailGroups];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** RFC 5952 text form: the longest run of two or more zero groups becomes '::'. */
function compressIPv6(groups: string[]): string {
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  if (bestStart < 0) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLen).join(':')}`;
}
