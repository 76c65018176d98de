/**
 * IP literals as numbers, so that prefixes can be compared with masks.
 *
 * An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`, also written `::ffff:7f00:1`) is
 * returned as the IPv4 address it maps to: a socket connected to it reaches that IPv4
 * host, so policy and routing must see the IPv4 address or `::ffff:127.0.0.1` would slip
 * past a rule for 127.0.0.0/8.
 */
import { isIPv4, isIPv6 } from 'node:net';

export type IpFamily = 4 | 6;

export interface IpAddress {
  readonly family: IpFamily;
  /** The address as an unsigned integer of `bitLength(family)` bits. */
  readonly value: bigint;
}

export function bitLength(family: IpFamily): 32 | 128 {
  return family === 4 ? 32 : 128;
}

const MAPPED_PREFIX = 0xffffn; // ::ffff:0:0/96, RFC 4291 section 2.5.5.2

/**
 * Parses an IPv4 or IPv6 literal (no brackets, no port). A zone (`fe80::1%eth0`) is
 * dropped: it picks an interface, not a different address. Returns undefined for
 * anything else, including host names and the loose IPv4 forms `127.1` or `0x7f.0.0.1`,
 * which `getaddrinfo` would accept but which are not literals.
 */
export function parseIp(text: string): IpAddress | undefined {
  if (isIPv4(text)) return { family: 4, value: BigInt(ipv4ToNumber(text)) };
  const zone = text.indexOf('%');
  const bare = zone === -1 ? text : text.slice(0, zone);
  if (!isIPv6(bare)) return undefined;
  const value = ipv6ToBigint(bare);
  if (value >> 32n === MAPPED_PREFIX) return { family: 4, value: value & 0xffff_ffffn };
  return { family: 6, value };
}

/** True if `text` is written as IPv6 (it may still parse to IPv4 if it is mapped). */
export function isIpv6Text(text: string): boolean {
  return text.includes(':');
}

export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) {
    const v = Number(ip.value);
    return [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff].join('.');
  }
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(Number((ip.value >> shift) & 0xffffn));
  // RFC 5952 section 4.2: compress the longest run of two or more zero groups, the first if tied.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLen).join(':');
  return `${left}::${right}`;
}

/** Only for text that `isIPv4` accepted. */
function ipv4ToNumber(text: string): number {
  let value = 0;
  for (const part of text.split('.')) value = value * 256 + Number(part);
  return value;
}

/** Only for text that `isIPv6` accepted, without a zone. */
function ipv6ToBigint(text: string): bigint {
  let body = text;
  const lastColon = body.lastIndexOf(':');
  const tail = body.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = ipv4ToNumber(tail);
    body = `${body.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const halves = body.split('::');
  const left = halves[0] === undefined || halves[0] === '' ? [] : halves[0].split(':');
  const rightText = halves[1];
  let groups = left;
  if (rightText !== undefined) {
    const right = rightText === '' ? [] : rightText.split(':');
    const zeros = new Array<string>(8 - left.length - right.length).fill('0');
    groups = [...left, ...zeros, ...right];
  }
  let value = 0n;
  for (const g of groups) value = (value << 16n) | BigInt(Number.parseInt(g, 16));
  return value;
}

/** '::ffff:a.b.c.d' (an IPv4 peer on a dual-stack socket) as 'a.b.c.d'; anything else as it is. */
export function unmapIpv4(address: string): string {
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(address) ? address.slice(7) : address;
}
