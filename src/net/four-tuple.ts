/**
 * A TCP connection's 4-tuple, and the one key both sides of early SYN compute from it:
 * the SYN seen in the NFQUEUE (src/intercept/syn-packet.ts) and the accepted socket
 * (remoteAddress/remotePort, and the original destination from the target source).
 *
 * Addresses are normalized through parseIp/formatIp, so an IPv4 client seen on a
 * dual-stack listener (`::ffff:198.18.0.1`) keys as the IPv4 packet did (`198.18.0.1`),
 * and IPv6 text is compressed the same way whichever side wrote it.
 */
import { formatIp, parseIp } from './ip-address.js';

export interface FourTuple {
  /** The client: the SYN's source, the accepted socket's remote end. */
  readonly saddr: string;
  readonly sport: number;
  /** The SYN's destination: the original destination (intercepted) or the listener's address. */
  readonly daddr: string;
  readonly dport: number;
}

/** The address in canonical text (IPv4-mapped as IPv4, IPv6 compressed); throws RangeError on a non-literal. */
export function canonicalAddress(address: string): string {
  const ip = parseIp(address);
  if (ip === undefined) throw new RangeError(`four-tuple: '${address}' is not an IP address literal`);
  return formatIp(ip);
}

/** `saddr|sport|daddr|dport` with canonical addresses; throws RangeError on a non-literal. */
export function fourTupleKey(t: FourTuple): string {
  return `${canonicalAddress(t.saddr)}|${t.sport}|${canonicalAddress(t.daddr)}|${t.dport}`;
}

/** The client's address in canonical form (the per-source cap's key). */
export function sourceKey(t: FourTuple): string {
  return canonicalAddress(t.saddr);
}

/** `198.18.0.1:40000 -> 198.18.0.2:80`, `[fd00::1]:40000 -> [fd00::2]:80` for logs. */
export function describeFourTuple(t: FourTuple): string {
  const host = (a: string): string => (a.includes(':') ? `[${a}]` : a);
  return `${host(t.saddr)}:${t.sport} -> ${host(t.daddr)}:${t.dport}`;
}
