/**
 * An NFQUEUE reader over netlink (NETLINK_NETFILTER, the nfnetlink_queue subsystem),
 * without libnetfilter_queue: the few messages early SYN needs, encoded here.
 *
 * The wire format (include/uapi/linux/netfilter/nfnetlink_queue.h, netlink(7)):
 * - every message is a struct nlmsghdr (16 bytes, host order: len, type, flags, seq,
 *   portid), then a struct nfgenmsg (family, version 0, res_id = the queue number in
 *   network order), then attributes;
 * - an attribute is a struct nlattr (2-byte length including itself, 2-byte type, host
 *   order), its payload, and padding to 4 bytes; the nfqueue payload structs inside are
 *   in network order;
 * - the type of an nfqueue message is (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_*.
 *
 * A queue is bound with NFQNL_MSG_CONFIG {NFQA_CFG_CMD BIND}, then configured to copy
 * `copyBytes` of each packet (NFQNL_COPY_PACKET) with NFQA_CFG_F_FAIL_OPEN: when the
 * queue or this socket's buffer is full, the kernel accepts the packet instead of
 * dropping it, so a slow reader delays no SYN and loses none, it only misses the event.
 * Each packet arrives as NFQNL_MSG_PACKET with NFQA_PACKET_HDR (the packet id) and
 * NFQA_PAYLOAD (the packet from its network header); the reader answers
 * NFQNL_MSG_VERDICT {NFQA_VERDICT_HDR NF_ACCEPT, id}.
 *
 * When the socket is closed (or its process dies) the kernel unbinds the queue, and an
 * iptables rule with `--queue-bypass` lets the packets through again.
 *
 * The calls block only in waitReadable(); everything else is non-blocking. Run the
 * receive loop on a thread of its own (src/intercept/syn-capture.ts does).
 */
import { NfqueueError } from '../errors.js';
import { sysCallError } from './errno.js';
import { NetfilterSocket } from './netfilter-socket.js';


const NLMSG_HDRLEN = 16;
const NFGENMSG_LEN = 4;
const NLA_HDRLEN = 4;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLMSG_ERROR = 0x2;
const NLMSG_DONE = 0x3;
/** nla_type's top two bits are the NESTED and NET_BYTEORDER flags. */
const NLA_TYPE_MASK = 0x3fff;

const NFNL_SUBSYS_QUEUE = 3;
const NFQNL_MSG_PACKET = 0;
const NFQNL_MSG_VERDICT = 1;
const NFQNL_MSG_CONFIG = 2;

const NFQA_PACKET_HDR = 1;
const NFQA_VERDICT_HDR = 2;
const NFQA_PAYLOAD = 10;

const NFQA_CFG_CMD = 1;
const NFQA_CFG_PARAMS = 2;
const NFQA_CFG_QUEUE_MAXLEN = 3;
const NFQA_CFG_MASK = 4;
const NFQA_CFG_FLAGS = 5;
const NFQNL_CFG_CMD_BIND = 1;
const NFQNL_CFG_CMD_UNBIND = 2;
const NFQNL_COPY_PACKET = 2;
const NFQA_CFG_F_FAIL_OPEN = 1;

export const NF_DROP = 0;
export const NF_ACCEPT = 1;

/** The largest queue number: nfgenmsg.res_id is 16 bits. */
export const MAX_QUEUE_NUM = 0xffff;


// ---- wire codec (pure: tested by feeding bytes) -------------------------------------

interface Attribute {
  readonly type: number;
  readonly value: Buffer;
}

const align4 = (n: number): number => (n + 3) & ~3;

/** One nfqueue request: nlmsghdr + nfgenmsg + attributes, each padded to 4 bytes. */
export function encodeQueueMessage(msg: number, flags: number, seq: number, queueNum: number, attrs: readonly Attribute[]): Buffer {
  const length = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.reduce((n, a) => n + align4(NLA_HDRLEN + a.value.length), 0);
  const buf = Buffer.alloc(length);
  buf.writeUInt32LE(length, 0);
  buf.writeUInt16LE((NFNL_SUBSYS_QUEUE << 8) | msg, 4);
  buf.writeUInt16LE(NLM_F_REQUEST | flags, 6);
  buf.writeUInt32LE(seq >>> 0, 8);
  buf.writeUInt32LE(0, 12); // portid 0: the kernel fills in ours
  buf.writeUInt8(0, 16); // nfgen_family AF_UNSPEC
  buf.writeUInt8(0, 17); // NFNETLINK_V0
  buf.writeUInt16BE(queueNum, 18);
  let at = NLMSG_HDRLEN + NFGENMSG_LEN;
  for (const a of attrs) {
    buf.writeUInt16LE(NLA_HDRLEN + a.value.length, at);
    buf.writeUInt16LE(a.type, at + 2);
    a.value.copy(buf, at + NLA_HDRLEN);
    at += align4(NLA_HDRLEN + a.value.length);
  }
  return buf;
}

function cmdAttr(command: number): Attribute {
  const v = Buffer.alloc(4); // struct nfqnl_msg_config_cmd { u8 command; u8 pad; be16 pf; }
  v.writeUInt8(command, 0);
  return { type: NFQA_CFG_CMD, value: v };
}

function be32Attr(type: number, value: number): Attribute {
  const v = Buffer.alloc(4);
  v.writeUInt32BE(value >>> 0, 0);
  return { type, value: v };
}

/** The configuration after BIND: copy mode and range, queue length, fail-open. */
export function encodeQueueParams(seq: number, queueNum: number, copyBytes: number, maxLen: number): Buffer {
  const params = Buffer.alloc(5); // struct nfqnl_msg_config_params { be32 copy_range; u8 copy_mode; } packed
  params.writeUInt32BE(copyBytes, 0);
  params.writeUInt8(NFQNL_COPY_PACKET, 4);
  return encodeQueueMessage(NFQNL_MSG_CONFIG, NLM_F_ACK, seq, queueNum, [
    { type: NFQA_CFG_PARAMS, value: params },
    be32Attr(NFQA_CFG_QUEUE_MAXLEN, maxLen),
    be32Attr(NFQA_CFG_MASK, NFQA_CFG_F_FAIL_OPEN),
    be32Attr(NFQA_CFG_FLAGS, NFQA_CFG_F_FAIL_OPEN),
  ]);
}

/** A verdict message; `into` is rewritten in place when given (the reader reuses one). */
export function encodeVerdict(queueNum: number, packetId: number, verdict: number, into?: Buffer): Buffer {
  if (into === undefined) {
    const v = Buffer.alloc(8);
    return encodeVerdict(queueNum, packetId, verdict,
      encodeQueueMessage(NFQNL_MSG_VERDICT, 0, 0, queueNum, [{ type: NFQA_VERDICT_HDR, value: v }]));
  }
  into.writeUInt16BE(queueNum, 18);
  // struct nfqnl_msg_verdict_hdr { be32 verdict; be32 id; } after the attribute header at 20.
  into.writeUInt32BE(verdict >>> 0, 24);
  into.writeUInt32BE(packetId >>> 0, 28);
  return into;
}

/** A packet the kernel queued. `payload` is a view into the receive buffer: valid until the next receive. */
export interface QueuedPacket {
  readonly queueNum: number;
  /** The id the verdict names. */
  readonly id: number;
  /** nfgen_family: AF_INET (2) or AF_INET6 (10). */
  readonly family: number;
  /** The netfilter hook (NF_INET_PRE_ROUTING 0, LOCAL_IN 1, FORWARD 2, LOCAL_OUT 3, POST_ROUTING 4). */
  readonly hook: number;
  /** The packet from its network header, cut to the configured copy range. */
  readonly payload: Buffer;
}

/** What a receive buffer held besides packets: netlink errors (negative errno, 0 for an ACK) by sequence number. */
export interface ParsedMessages {
  readonly packets: QueuedPacket[];
  readonly acks: { readonly seq: number; readonly error: number }[];
}

/** Parses the netlink messages in `buf[0, length)`. Malformed trailing bytes end the parse. */
export function parseQueueMessages(buf: Buffer, length: number): ParsedMessages {
  const packets: QueuedPacket[] = [];
  const acks: { seq: number; error: number }[] = [];
  let at = 0;
  while (at + NLMSG_HDRLEN <= length) {
    const len = buf.readUInt32LE(at);
    if (len < NLMSG_HDRLEN || at + len > length) break;
    const type = buf.readUInt16LE(at + 4);
    const seq = buf.readUInt32LE(at + 8);
    if (type === NLMSG_ERROR && len >= NLMSG_HDRLEN + 4) {
      acks.push({ seq, error: buf.readInt32LE(at + NLMSG_HDRLEN) });
    } else if (type === ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET) && len >= NLMSG_HDRLEN + NFGENMSG_LEN) {
      const packet = parsePacket(buf, at, len);
      if (packet !== undefined) packets.push(packet);
    } else if (type === NLMSG_DONE) {
      // nothing: multi-part terminator
    }
    at += align4(len);
  }
  return { packets, acks };
}

function parsePacket(buf: Buffer, msgAt: number, msgLen: number): QueuedPacket | undefined {
  const family = buf.readUInt8(msgAt + NLMSG_HDRLEN);
  const queueNum = buf.readUInt16BE(msgAt + NLMSG_HDRLEN + 2);
  let id: number | undefined;
  let hook = -1;
  let payload: Buffer | undefined;
  const end = msgAt + msgLen;
  let at = msgAt + NLMSG_HDRLEN + NFGENMSG_LEN;
  while (at + NLA_HDRLEN <= end) {
    const len = buf.readUInt16LE(at);
    const type = buf.readUInt16LE(at + 2) & NLA_TYPE_MASK;
    if (len < NLA_HDRLEN || at + len > end) break;
    if (type === NFQA_PACKET_HDR && len >= NLA_HDRLEN + 7) {
      // struct nfqnl_msg_packet_hdr { be32 packet_id; be16 hw_protocol; u8 hook; } packed
      id = buf.readUInt32BE(at + NLA_HDRLEN);
      hook = buf.readUInt8(at + NLA_HDRLEN + 6);
    } else if (type === NFQA_PAYLOAD) {
      payload = buf.subarray(at + NLA_HDRLEN, at + len);
    }
    at += align4(len);
  }
  if (id === undefined) return undefined;
  return { queueNum, id, family, hook, payload: payload ?? buf.subarray(0, 0) };
}

// ---- the socket ----------------------------------------------------------------------

export interface NfQueueOptions {
  /** The queue number, as in `-j NFQUEUE --queue-num K`. */
  readonly queueNum: number;
  /** Bytes of each packet copied to us: enough for the IP and TCP headers (default 128). */
  readonly copyBytes?: number;
  /** Packets the kernel holds for this queue before fail-open accepts them unseen (default 4096). */
  readonly maxLen?: number;
  /** SO_RCVBUF (forced past rmem_max when privileged; default 1 MiB). */
  readonly receiveBufferBytes?: number;
}

const ACK_TIMEOUT_NS = 2e9;

/**
 * One bound queue. receive() drains what is readable without blocking and gives each
 * packet to `onPacket`, which must answer with accept() (or verdict()) before the next
 * receive (the payload view is reused).
 */
export class NfQueue {
  readonly queueNum: number;
  readonly fd: number;
  /** Packets that arrived while open() configured the queue: accepted at once, not passed to receive(). */
  unreported = 0;
  readonly #socket: NetfilterSocket;
  readonly #buf = Buffer.alloc(256 * 1024);
  readonly #verdict: Buffer;
  #seq = 1;
  #closed = false;

  private constructor(socket: NetfilterSocket, queueNum: number) {
    this.#socket = socket;
    this.fd = socket.fd;
    this.queueNum = queueNum;
    this.#verdict = encodeVerdict(queueNum, 0, NF_ACCEPT);
  }

  /** Opens a netlink socket and binds queue `options.queueNum` (needs CAP_NET_ADMIN). */
  static open(options: NfQueueOptions): NfQueue {
    const { queueNum, copyBytes = 128, maxLen = 4096, receiveBufferBytes = 1 << 20 } = options;
    if (!Number.isInteger(queueNum) || queueNum < 0 || queueNum > MAX_QUEUE_NUM) {
      throw new NfqueueError(`nfqueue: queue number must be an integer in 0..${MAX_QUEUE_NUM}, got ${queueNum}`);
    }
    if (!Number.isInteger(copyBytes) || copyBytes < 60 || copyBytes > 0xffff) {
      throw new NfqueueError(`nfqueue: copyBytes must be an integer in 60..65535, got ${copyBytes}`);
    }
    const socket = NetfilterSocket.open({ groups: 0, receiveBufferBytes, name: `nfqueue ${String(queueNum)}` });
    const q = new NfQueue(socket, queueNum);
    try {
      q.#request(encodeQueueMessage(NFQNL_MSG_CONFIG, NLM_F_ACK, q.#nextSeq(), queueNum, [cmdAttr(NFQNL_CFG_CMD_BIND)]), 'BIND');
      q.#request(encodeQueueParams(q.#nextSeq(), queueNum, copyBytes, maxLen), 'PARAMS');
    } catch (err) {
      socket.close();
      throw err;
    }
    return q;
  }

  /**
   * Packets the kernel accepted without showing them to us because this socket's buffer was
   * full (fail-open): the socket's drop count (SO_MEMINFO), since NETLINK_NO_ENOBUFS keeps
   * recv() from reporting them, plus any ENOBUFS seen. (The count was the ENOBUFS alone,
   * and stayed 0: a 4 KiB buffer left unread while 50 SYNs came showed 41 drops here.)
   */
  overflows(): number {
    return this.#socket.overruns + this.#socket.drops();
  }

  /** Waits up to `timeoutNs` (negative: forever) for something to read; false on timeout or signal. */
  waitReadable(timeoutNs: number): boolean {
    return this.#socket.waitReadable(timeoutNs);
  }

  /** Reads what is readable now and calls `onPacket` for each queued packet; returns how many. */
  receive(onPacket: (packet: QueuedPacket) => void): number {
    let count = 0;
    for (;;) {
      const n = this.#socket.recv(this.#buf);
      if (n <= 0) return count;
      for (const p of parseQueueMessages(this.#buf, n).packets) {
        count++;
        onPacket(p);
      }
    }
  }

  /** Verdict NF_ACCEPT for packet `id`. */
  accept(id: number): void {
    this.verdict(id, NF_ACCEPT);
  }

  verdict(id: number, verdict: number): void {
    encodeVerdict(this.queueNum, id, verdict, this.#verdict);
    this.#socket.send(this.#verdict, 'VERDICT');
  }

  /** Unbinds the queue and closes the socket (closing alone would also unbind). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#socket.send(encodeQueueMessage(NFQNL_MSG_CONFIG, 0, this.#nextSeq(), this.queueNum, [cmdAttr(NFQNL_CFG_CMD_UNBIND)]), 'UNBIND');
    } catch {
      // closing the socket unbinds too
    } finally {
      this.#socket.close();
    }
  }

  #nextSeq(): number {
    this.#seq = (this.#seq + 1) >>> 0;
    return this.#seq;
  }

  /** Sends a request with NLM_F_ACK and waits for its answer; a netlink error becomes an NfqueueError. */
  #request(msg: Buffer, what: string): void {
    const seq = msg.readUInt32LE(8);
    this.#socket.send(msg, what);
    const deadline = process.hrtime.bigint() + BigInt(ACK_TIMEOUT_NS);
    for (;;) {
      const left = Number(deadline - process.hrtime.bigint());
      if (left <= 0) throw new NfqueueError(`nfqueue ${this.queueNum}: no answer to ${what} within ${ACK_TIMEOUT_NS / 1e9} s`);
      this.waitReadable(left);
      const n = this.#socket.recv(this.#buf);
      if (n === 0) continue;
      const parsed = parseQueueMessages(this.#buf, n);
      // Once BIND is acknowledged the kernel queues packets to us, possibly before the
      // PARAMS answer: each must get its verdict now, or it would be held for good.
      for (const p of parsed.packets) {
        this.accept(p.id);
        this.unreported++;
      }
      const ack = parsed.acks.find((a) => a.seq === seq);
      if (ack === undefined) continue;
      if (ack.error === 0) return;
      const cause = sysCallError(`nfnetlink_queue ${what} (queue ${this.queueNum})`, -ack.error);
      const hint = -ack.error === 16 ? ': another process has bound this queue' : -ack.error === 1 ? ': needs CAP_NET_ADMIN' : '';
      throw new NfqueueError(`${cause.message}${hint}`, { cause });
    }
  }
}
