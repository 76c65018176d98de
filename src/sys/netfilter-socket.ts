/**
 * A non-blocking NETLINK_NETFILTER socket: what the NFQUEUE reader (nfqueue.ts) and the
 * conntrack event reader (conntrack-events.ts) share. It is opened with
 * NETLINK_NO_ENOBUFS (an overflow costs messages, not a failed recv()) and a receive
 * buffer forced past rmem_max when privileged, then bound to `groups` (a multicast mask;
 * 0 for unicast, as a queue is). The messages themselves are each reader's.
 *
 * netlink(7): struct sockaddr_nl { u16 family; u16 pad; u32 pid; u32 groups; }.
 */
import { EAGAIN, EINTR, EPERM, sysCallError } from './errno.js';
import { close } from './fd.js';
import { lastErrno, libcFunction } from './libc.js';
import { PollSet, POLLIN } from './poll.js';
import { SocketDrops } from './socket-drops.js';
import { AF_NETLINK, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_RAW, SOCKET_CALL as PROTO, SOL_SOCKET } from './socket-calls.js';

const NETLINK_NETFILTER = 12;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;
const SOL_NETLINK = 270;
const NETLINK_NO_ENOBUFS = 5;
const ENOBUFS = 105;


export interface NetfilterSocketOptions {
  /** Multicast groups to join (nl_groups); 0: none. */
  readonly groups: number;
  readonly receiveBufferBytes: number;
  /** Names the socket in error messages, e.g. 'nfqueue 1024'. */
  readonly name: string;
}

export class NetfilterSocket {
  readonly fd: number;
  /** Times recv() reported ENOBUFS (never with NETLINK_NO_ENOBUFS set: see drops()). */
  overruns = 0;
  readonly #name: string;
  readonly #poll: PollSet;
  readonly #drops: SocketDrops;
  #closed = false;

  private constructor(fd: number, name: string) {
    this.fd = fd;
    this.#name = name;
    this.#poll = new PollSet([{ fd, events: POLLIN }]);
    this.#drops = new SocketDrops(fd);
  }

  /** Opens, configures and binds the socket; nothing is left open on failure. */
  static open(options: NetfilterSocketOptions): NetfilterSocket {
    const fd = libcFunction(PROTO.socket)(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_NETFILTER) as number;
    if (fd < 0) throw sysCallError('socket(AF_NETLINK, NETLINK_NETFILTER)', lastErrno());
    const s = new NetfilterSocket(fd, options.name);
    try {
      s.setInt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1, 'NETLINK_NO_ENOBUFS');
      try {
        s.setInt(SOL_SOCKET, SO_RCVBUFFORCE, options.receiveBufferBytes, 'SO_RCVBUFFORCE');
      } catch {
        s.setInt(SOL_SOCKET, SO_RCVBUF, options.receiveBufferBytes, 'SO_RCVBUF');
      }
      const addr = Buffer.alloc(12);
      addr.writeUInt16LE(AF_NETLINK, 0);
      addr.writeUInt32LE(options.groups >>> 0, 8);
      if ((libcFunction(PROTO.bind)(fd, addr, addr.length) as number) < 0) {
        const errno = lastErrno();
        const e = sysCallError(`bind(AF_NETLINK${options.groups === 0 ? '' : `, groups ${String(options.groups)}`})`, errno);
        if (errno === EPERM) e.message += ': needs CAP_NET_ADMIN';
        throw e;
      }
    } catch (err) {
      close(fd);
      throw err;
    }
    return s;
  }

  setInt(level: number, name: number, value: number, what: string): void {
    const v = Buffer.alloc(4);
    v.writeInt32LE(value, 0);
    if ((libcFunction(PROTO.setsockopt)(this.fd, level, name, v, 4) as number) < 0) {
      throw sysCallError(`setsockopt(netlink fd ${this.fd}, ${what})`, lastErrno());
    }
  }

  /** Waits up to `timeoutNs` (negative: forever) for something to read; false on timeout or signal. */
  waitReadable(timeoutNs: number): boolean {
    return this.#poll.wait(timeoutNs) > 0;
  }

  send(msg: Buffer, what: string): void {
    for (;;) {
      const n = libcFunction(PROTO.send)(this.fd, msg, msg.length, 0) as number;
      if (n >= 0) return;
      const errno = lastErrno();
      if (errno !== EINTR) throw sysCallError(`send(${this.#name} ${what})`, errno);
    }
  }

  /** Bytes received into `buf`, or 0 when nothing is readable. */
  recv(buf: Buffer): number {
    for (;;) {
      const n = libcFunction(PROTO.recv)(this.fd, buf, buf.length, 0) as number;
      if (n >= 0) return n;
      const errno = lastErrno();
      if (errno === EAGAIN) return 0;
      if (errno === ENOBUFS) { this.overruns++; continue; }
      if (errno !== EINTR) throw sysCallError(`recv(${this.#name})`, errno);
    }
  }

  /** Messages the kernel dropped for this socket because its buffer was full (sk_drops). */
  drops(): number {
    return this.#drops.read();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    close(this.fd);
  }
}
