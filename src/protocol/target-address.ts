import { isIPv4, isIPv6 } from 'node:net';
import { AddressType, MAX_DNS_NAME_LENGTH } from './header-layout.js';
import { BadAddressError } from '../errors.js';

const DOT = 0x2e;
const HYPHEN = 0x2d;
const MAX_LABEL_LENGTH = 63;

/** A DNS name the protocol carries: ASCII LDH labels (underscore allowed), 1..253 bytes. */
export function isValidDnsName(name: string): boolean {
  // Checked as text first: a Buffer conversion would fold non-ASCII characters into ASCII bytes.
  if (!/^[\x21-\x7e]*$/.test(name)) return false;
  return dnsNameProblem(Buffer.from(name, 'latin1'), true) === undefined;
}

/**
 * Why `bytes` cannot be (`complete`) or start (otherwise) a valid DNS name, or undefined.
 * On a prefix it reports only what no later byte can repair, so the header decoder can
 * refuse a bad name at its first bad byte; on a complete name it agrees with isValidDnsName.
 */
export function dnsNameProblem(bytes: Uint8Array, complete: boolean): string | undefined {
  if (bytes.length > MAX_DNS_NAME_LENGTH) return `name longer than ${MAX_DNS_NAME_LENGTH} bytes`;
  let label = 0;
  let prev = 0;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i] ?? 0;
    if (c === DOT) {
      if (label === 0) return `empty label at byte ${i}`;
      if (prev === HYPHEN) return `label ends with '-' at byte ${i - 1}`;
      label = 0;
    } else if (isLdhOrUnderscore(c)) {
      if (label === 0 && c === HYPHEN) return `label starts with '-' at byte ${i}`;
      if (++label > MAX_LABEL_LENGTH) return `label longer than ${MAX_LABEL_LENGTH} bytes at byte ${i}`;
    } else {
      return `byte 0x${c.toString(16).padStart(2, '0')} at ${i} is not allowed in a DNS name`;
    }
    prev = c;
  }
  if (!complete) return undefined;
  if (bytes.length === 0) return 'empty name';
  if (prev === HYPHEN) return `label ends with '-' at byte ${bytes.length - 1}`;
  return undefined;
}

function isLdhOrUnderscore(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === HYPHEN || c === 0x5f;
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
