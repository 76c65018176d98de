/**
 * A reader of conntrack NEW events over netlink (NETLINK_NETFILTER, the ctnetlink
 * subsystem), without libnetfilter_conntrack: the socket joins the multicast group of new
 * connections and parses each event just enough to give its original 4-tuple. Written to
 * measure conntrack events against NFQUEUE as early SYN's signal
 * (benchmarks/early-syn-signal.ts); early SYN itself uses nfqueue.ts.
 *
 * The wire format (include/uapi/linux/netfilter/nfnetlink.h, nfnetlink_conntrack.h,
 * net/netfilter/nf_conntrack_netlink.c: ctnetlink_conntrack_event(), netlink(7)):
 * - the socket binds with sockaddr_nl.nl_groups = 1 << (NFNLGRP_CONNTRACK_NEW - 1): the
 *   kernel multicasts one message per new conntrack entry to every socket in the group,
 *   in every network namespace only to that namespace's sockets;
 * - every message is a struct nlmsghdr (16 bytes, host order: len, type, flags, seq,
 *   portid), then a struct nfgenmsg (family AF_INET/AF_INET6, version 0, res_id 0), then
 *   attributes; a new entry's event has type (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
 *   and flags NLM_F_CREATE | NLM_F_EXCL (an update has the same type without them, and
 *   goes to another group);
 * - an attribute is a struct nlattr (2-byte length including itself, 2-byte type, host
 *   order; the type's top bits are the NESTED and NET_BYTEORDER flags), its payload, and
 *   padding to 4 bytes. The values inside are in network order;
 * - the original direction's tuple is CTA_TUPLE_ORIG, nested: CTA_TUPLE_IP (nested:
 *   CTA_IP_V4_SRC/DST, 4 bytes, or CTA_IP_V6_SRC/DST, 16) and CTA_TUPLE_PROTO (nested:
 *   CTA_PROTO_NUM, 1 byte, then for TCP/UDP CTA_PROTO_SRC_PORT/DST_PORT, 2 bytes each).
 *   CTA_ID (4 bytes) names the entry; for TCP, CTA_PROTOINFO (nested) → CTA_PROTOINFO_TCP
 *   (nested) → CTA_PROTOINFO_TCP_STATE (1 byte) gives its state: SYN_SENT when a SYN made it.
 *   Nothing in the event carries the SYN's sequence number (the client's ISN).
 *
 * The kernel sends an event when the entry is confirmed: for a SYN to this host, at
 * LOCAL_IN after the filter hooks, before TCP sees it; for a SYN this host sends, at
 * POST_ROUTING. It does not wait for the reader: the packet goes on whatever the socket
 * does (no verdict, nothing to fail open). Events are made only while conntrack tracks the
 * namespace (some rule uses it; since Linux 5.x the hooks are registered on demand) and,
 * with net.netfilter.nf_conntrack_events = 2 (the default), only while some socket
 * listens.
 *
 * When the socket's buffer is full the kernel drops the event for this socket. With
 * NETLINK_NO_ENOBUFS (set here, as nfqueue.ts does) it does not report that with ENOBUFS
 * but still counts it in the socket's sk_drops, which drops() reads (SO_MEMINFO);
 * without it recv() fails once with ENOBUFS, counted in `overruns`.
 *
 * The calls block only in waitReadable(); everything else is non-blocking. Run the
 * receive loop on a thread of its own.
 */
import { formatIp } from '../net/ip-address.js';
import { NetfilterSocket } from './netfilter-socket.js';
import { AF_INET, AF_INET6 } from './socket-calls.js';


const NLMSG_HDRLEN = 16;
const NFGENMSG_LEN = 4;
const NLA_HDRLEN = 4;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
/** nla_type's top two bits are the NESTED and NET_BYTEORDER flags. */
const NLA_TYPE_MASK = 0x3fff;

/** enum nfnetlink_groups: NFNLGRP_CONNTRACK_NEW is group 1, bit 0 of nl_groups. */
export const NFNLGRP_CONNTRACK_NEW = 1;
const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_NEW = 0;
export const CT_NEW_TYPE = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;

const CTA_TUPLE_ORIG = 1;
const CTA_PROTOINFO = 4;
const CTA_ID = 12;
const CTA_TUPLE_IP = 1;
const CTA_TUPLE_PROTO = 2;
const CTA_IP_V4_SRC = 1;
const CTA_IP_V4_DST = 2;
const CTA_IP_V6_SRC = 3;
const CTA_IP_V6_DST = 4;
const CTA_PROTO_NUM = 1;
const CTA_PROTO_SRC_PORT = 2;
const CTA_PROTO_DST_PORT = 3;
const CTA_PROTOINFO_TCP = 1;
const CTA_PROTOINFO_TCP_STATE = 1;
/** enum tcp_conntrack: the state of an entry a SYN made (a packet picked up mid-stream makes ESTABLISHED or later). */
export const TCP_CONNTRACK_SYN_SENT = 1;


// ---- wire codec (pure: tested by feeding bytes) -------------------------------------

/** A new conntrack entry: its original direction's tuple. */
export interface ConntrackEvent {
  readonly family: 4 | 6;
  /** IP protocol number (6 TCP, 17 UDP, ...). */
  readonly protocol: number;
  readonly saddr: string;
  readonly daddr: string;
  /** 0 for a protocol without ports. */
  readonly sport: number;
  readonly dport: number;
  /** CTA_ID: the entry's id (undefined when the kernel sent none). */
  readonly id: number | undefined;
  /**
   * TCP only: the entry's state (CTA_PROTOINFO_TCP_STATE, enum tcp_conntrack), undefined
   * when absent. TCP_CONNTRACK_SYN_SENT for an entry made by a SYN; with
   * net.netfilter.nf_conntrack_tcp_loose = 1 (the default) any other packet of a
   * connection conntrack does not know (tracking just started, the table was flushed)
   * also makes a new entry, in a later state.
   */
  readonly tcpState: number | undefined;
}

const align4 = (n: number): number => (n + 3) & ~3;

/** Calls `visit(type, valueAt, valueLen)` for each attribute in `buf[at, end)`; malformed bytes end the walk. */
function forEachAttribute(buf: Buffer, at: number, end: number, visit: (type: number, valueAt: number, valueLen: number) => void): void {
  while (at + NLA_HDRLEN <= end) {
    const len = buf.readUInt16LE(at);
    if (len < NLA_HDRLEN || at + len > end) return;
    visit(buf.readUInt16LE(at + 2) & NLA_TYPE_MASK, at + NLA_HDRLEN, len - NLA_HDRLEN);
    at += align4(len);
  }
}

function addressText(family: 4 | 6, b: Buffer, at: number): string {
  const value = family === 4 ? BigInt(b.readUInt32BE(at)) : (b.readBigUInt64BE(at) << 64n) | b.readBigUInt64BE(at + 8);
  return formatIp({ family, value });
}

/** The event of one IPCTNL_MSG_CT_NEW message at `msgAt`, or undefined if it has no complete original tuple. */
function parseNewEvent(buf: Buffer, msgAt: number, msgLen: number): ConntrackEvent | undefined {
  const nfFamily = buf.readUInt8(msgAt + NLMSG_HDRLEN);
  const family = nfFamily === AF_INET ? 4 : nfFamily === AF_INET6 ? 6 : undefined;
  if (family === undefined) return undefined;
  let saddr: string | undefined;
  let daddr: string | undefined;
  let protocol: number | undefined;
  let sport = 0;
  let dport = 0;
  let id: number | undefined;
  let tcpState: number | undefined;
  forEachAttribute(buf, msgAt + NLMSG_HDRLEN + NFGENMSG_LEN, msgAt + msgLen, (type, at, len) => {
    if (type === CTA_ID && len >= 4) {
      id = buf.readUInt32BE(at);
    } else if (type === CTA_PROTOINFO) {
      forEachAttribute(buf, at, at + len, (infoType, pAt, pLen) => {
        if (infoType !== CTA_PROTOINFO_TCP) return;
        forEachAttribute(buf, pAt, pAt + pLen, (tcpType, sAt, sLen) => {
          if (tcpType === CTA_PROTOINFO_TCP_STATE && sLen >= 1) tcpState = buf.readUInt8(sAt);
        });
      });
    } else if (type === CTA_TUPLE_ORIG) {
      forEachAttribute(buf, at, at + len, (tupleType, tAt, tLen) => {
        if (tupleType === CTA_TUPLE_IP) {
          forEachAttribute(buf, tAt, tAt + tLen, (ipType, iAt, iLen) => {
            if (family === 4 && iLen >= 4 && ipType === CTA_IP_V4_SRC) saddr = addressText(4, buf, iAt);
            else if (family === 4 && iLen >= 4 && ipType === CTA_IP_V4_DST) daddr = addressText(4, buf, iAt);
            else if (family === 6 && iLen >= 16 && ipType === CTA_IP_V6_SRC) saddr = addressText(6, buf, iAt);
            else if (family === 6 && iLen >= 16 && ipType === CTA_IP_V6_DST) daddr = addressText(6, buf, iAt);
          });
        } else if (tupleType === CTA_TUPLE_PROTO) {
          forEachAttribute(buf, tAt, tAt + tLen, (pType, pAt, pLen) => {
            if (pType === CTA_PROTO_NUM && pLen >= 1) protocol = buf.readUInt8(pAt);
            else if (pType === CTA_PROTO_SRC_PORT && pLen >= 2) sport = buf.readUInt16BE(pAt);
            else if (pType === CTA_PROTO_DST_PORT && pLen >= 2) dport = buf.readUInt16BE(pAt);
          });
        }
      });
    }
  });
  if (saddr === undefined || daddr === undefined || protocol === undefined) return undefined;
  return { family, protocol, saddr, daddr, sport, dport, id, tcpState };
}

/** What a receive buffer held: new-entry events, and messages that were not one or had no complete tuple. */
export interface ParsedConntrackMessages {
  readonly events: ConntrackEvent[];
  readonly skipped: number;
}

/** Parses the netlink messages in `buf[0, length)`. Malformed trailing bytes end the parse. */
export function parseConntrackMessages(buf: Buffer, length: number): ParsedConntrackMessages {
  const events: ConntrackEvent[] = [];
  let skipped = 0;
  let at = 0;
  while (at + NLMSG_HDRLEN <= length) {
    const len = buf.readUInt32LE(at);
    if (len < NLMSG_HDRLEN || at + len > length) break;
    const type = buf.readUInt16LE(at + 4);
    const flags = buf.readUInt16LE(at + 6);
    const isNew = type === CT_NEW_TYPE && (flags & (NLM_F_CREATE | NLM_F_EXCL)) === (NLM_F_CREATE | NLM_F_EXCL);
    const event = isNew && len >= NLMSG_HDRLEN + NFGENMSG_LEN ? parseNewEvent(buf, at, len) : undefined;
    if (event === undefined) skipped++;
    else events.push(event);
    at += align4(len);
  }
  return { events, skipped };
}

// ---- the socket ----------------------------------------------------------------------

export interface ConntrackEventsOptions {
  /** SO_RCVBUF (forced past rmem_max when privileged; default 1 MiB). */
  readonly receiveBufferBytes?: number;
}

/**
 * A netlink socket in the conntrack NEW group of the calling thread's network namespace.
 * receive() drains what is readable without blocking and gives each event to `onEvent`.
 */
export class ConntrackEvents {
  readonly fd: number;
  /** Messages that were not a new entry's event with a complete tuple. */
  skipped = 0;
  readonly #socket: NetfilterSocket;
  readonly #buf = Buffer.alloc(256 * 1024);

  private constructor(socket: NetfilterSocket) {
    this.#socket = socket;
    this.fd = socket.fd;
  }

  /** Opens the socket and joins NFNLGRP_CONNTRACK_NEW (needs CAP_NET_ADMIN in the namespace). */
  static open(options: ConntrackEventsOptions = {}): ConntrackEvents {
    const { receiveBufferBytes = 1 << 20 } = options;
    if (!Number.isInteger(receiveBufferBytes) || receiveBufferBytes < 4096 || receiveBufferBytes > 2 ** 30) {
      throw new RangeError(`conntrack events: receiveBufferBytes must be an integer in 4096..2^30, got ${receiveBufferBytes}`);
    }
    return new ConntrackEvents(NetfilterSocket.open({ groups: 1 << (NFNLGRP_CONNTRACK_NEW - 1), receiveBufferBytes, name: 'conntrack events' }));
  }

  /** Times recv() reported ENOBUFS (never with NETLINK_NO_ENOBUFS, which open() sets: see drops()). */
  get overruns(): number {
    return this.#socket.overruns;
  }

  /** Waits up to `timeoutNs` (negative: forever) for something to read; false on timeout or signal. */
  waitReadable(timeoutNs: number): boolean {
    return this.#socket.waitReadable(timeoutNs);
  }

  /** Reads what is readable now and calls `onEvent` for each new entry; returns how many. */
  receive(onEvent: (event: ConntrackEvent) => void): number {
    let count = 0;
    for (;;) {
      const n = this.#socket.recv(this.#buf);
      if (n <= 0) return count;
      const parsed = parseConntrackMessages(this.#buf, n);
      this.skipped += parsed.skipped;
      for (const e of parsed.events) {
        count++;
        onEvent(e);
      }
    }
  }

  /** Events the kernel dropped for this socket because its buffer was full (sk_drops, through SO_MEMINFO). */
  drops(): number {
    return this.#socket.drops();
  }

  /** Closes the socket (the kernel takes it out of the group). */
  close(): void {
    this.#socket.close();
  }
}
