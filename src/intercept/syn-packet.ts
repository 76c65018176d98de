/**
 * The parts of a queued SYN that early SYN needs, read from the packet as NFQUEUE
 * copies it (from the network header, cut to the copy range): the 4-tuple, the
 * sequence number (the client's ISN, which tells a retransmitted SYN from a new
 * connection on a reused 4-tuple) and the flags.
 *
 * IPv6: the TCP header must follow the fixed header (next header 6). A SYN with
 * extension headers is not parsed (undefined): the steering rule does not match it
 * either (src/intercept/syn-steer-bpf.ts), so it is never queued and falls back.
 */
import type { FourTuple } from '../net/four-tuple.js';
import { formatIp } from '../net/ip-address.js';

export interface SynPacket extends FourTuple {
  readonly family: 4 | 6;
  /** The sequence number of the SYN: the client's initial sequence number. */
  readonly isn: number;
  /** TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10). */
  readonly flags: number;
}

const IPPROTO_TCP = 6;
const TCP_MIN = 20;
export const TCP_SYN = 0x02;
export const TCP_ACK = 0x10;

/** IPv4 text, or RFC 5952 IPv6 text as Node prints remoteAddress (through formatIp). */
function addressText(family: 4 | 6, b: Buffer, at: number): string {
  const value = family === 4 ? BigInt(b.readUInt32BE(at)) : (b.readBigUInt64BE(at) << 64n) | b.readBigUInt64BE(at + 8);
  return formatIp({ family, value });
}

/** The SYN in `packet` (an IP packet from its network header), or undefined if it is not a parsable TCP packet. */
export function parseSynPacket(packet: Buffer): SynPacket | undefined {
  if (packet.length < 1) return undefined;
  const version = (packet[0] ?? 0) >> 4;
  let tcpAt: number;
  let family: 4 | 6;
  let saddr: string;
  let daddr: string;
  if (version === 4) {
    const ihl = ((packet[0] ?? 0) & 0x0f) * 4;
    if (ihl < 20 || packet.length < ihl + TCP_MIN) return undefined;
    if (packet[9] !== IPPROTO_TCP) return undefined;
    if ((packet.readUInt16BE(6) & 0x1fff) !== 0) return undefined; // a later fragment has no TCP header
    family = 4;
    saddr = addressText(4, packet, 12);
    daddr = addressText(4, packet, 16);
    tcpAt = ihl;
  } else if (version === 6) {
    if (packet.length < 40 + TCP_MIN || packet[6] !== IPPROTO_TCP) return undefined;
    family = 6;
    saddr = addressText(6, packet, 8);
    daddr = addressText(6, packet, 24);
    tcpAt = 40;
  } else {
    return undefined;
  }
  return {
    family, saddr, daddr,
    sport: packet.readUInt16BE(tcpAt),
    dport: packet.readUInt16BE(tcpAt + 2),
    isn: packet.readUInt32BE(tcpAt + 4),
    flags: packet[tcpAt + 13] ?? 0,
  };
}

/** A connection-opening SYN: SYN set, ACK clear (a SYN-ACK is not a client's SYN). */
export function isOpeningSyn(p: SynPacket): boolean {
  return (p.flags & (TCP_SYN | TCP_ACK)) === TCP_SYN;
}
