/**
 * The socket factory: TCP fds made here, with their options set before bind, listen or
 * connect, then handed to Node.
 *
 * Node's `net` sets options only after the fact (and ignores `reusePort` on Node 20),
 * but SO_REUSEPORT must precede bind, IP_TRANSPARENT must precede a bind to a foreign
 * address, and buffer sizes and the congestion control must precede the handshake (the
 * window scale is fixed by the SYN). So the fd is made here and Node adopts it:
 *
 *   listener: createListenerFd() -> listenOnFd(server, fd, backlog)
 *   next leg: createConnectionFd() -> connectSocket(fd, target)
 *
 * Listeners: Node calls listen() again on the fd it adopts, with its own backlog, and
 * the kernel takes the new value. Measured with ss on Node 20.20 and 24.22: after
 * `listen({ fd })` and after `listen({ fd, backlog: 4096 })` the queue is 511 (the
 * `backlog` option is ignored when `fd` is given); only the positional form
 * `listen({ fd }, 4096)` keeps 4096. listenOnFd() uses that form.
 *
 * Next legs, measured on Node 20.20 and 24.22 (test/sys-socket-factory.test.ts pins both):
 * - `new net.Socket({ fd })` on an unconnected fd, then `.connect(port, ip)` in the same
 *   tick works on both: Node connects the handle it already has, emits 'connect', and
 *   timeouts, errors and `remoteAddress` behave as for any Node socket.
 * - The same `.connect()` one tick later fails on both: the constructor starts reading,
 *   epoll reports POLLHUP for the unconnected socket, the read fails with ENOTCONN and
 *   Node destroys the socket; a later connect() then makes a NEW fd without our options.
 *   So connectSocket() takes only IP literals (a DNS lookup would defer the connect) and
 *   connects before returning.
 * - A non-blocking connect() through koffi (EINPROGRESS) and then `new net.Socket({ fd })`
 *   also carries data both ways, but Node never emits 'connect' (it believes the socket
 *   is open at once), so a refused or timed-out handshake would surface only as a write
 *   error. Not used.
 *
 * Every failure is a SysCallError naming the call and errno, or a SocketOptionsError for
 * options that cannot be applied; the fd is closed on every error path.
 */
import { isIPv4, isIPv6, Socket, type Server } from 'node:net';
import { SocketOptionsError } from '../errors.js';
import { sysCallError } from './errno.js';
import { close } from './fd.js';
import { lastErrno, libcFunction } from './libc.js';
import { AF_INET, AF_INET6, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_STREAM, SOCKET_CALL as PROTO } from './socket-calls.js';


/** Option levels and names (Linux, x86_64 and arm64 alike) for setSocketOption/getSocketIntOption. */
export const SOCKOPT = {
  SO_REUSEADDR: [1, 2],
  SO_SNDBUF: [1, 7],
  SO_RCVBUF: [1, 8],
  SO_KEEPALIVE: [1, 9],
  SO_REUSEPORT: [1, 15],
  SO_MARK: [1, 36],
  IP_TRANSPARENT: [0, 19],
  IPV6_V6ONLY: [41, 26],
  IPV6_TRANSPARENT: [41, 75],
  TCP_NODELAY: [6, 1],
  TCP_CONGESTION: [6, 13],
  TCP_FASTOPEN: [6, 23],
} as const satisfies Record<string, readonly [number, number]>;
export type SockoptName = keyof typeof SOCKOPT;

/** A backlog that holds a burst of 2,000 simultaneous connects (Node's fixed 511 lost 98 of them). The kernel caps it at net.core.somaxconn (4096 by default since Linux 5.4). */
export const DEFAULT_BACKLOG = 4096;


/** Options set on a fresh socket, before bind/listen/connect. Unset means the kernel default. */
export interface SocketOptions {
  /** SO_REUSEADDR (Node sets it on every listener; default true for listeners). */
  readonly reuseAddress?: boolean;
  /** SO_REUSEPORT: join (or start) the port's reuseport group. */
  readonly reusePort?: boolean;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT: accept TPROXY'd flows, or bind a foreign source. Needs CAP_NET_ADMIN. */
  readonly transparent?: boolean;
  /** SO_MARK (fwmark) for policy routing and nftables. Needs CAP_NET_ADMIN. */
  readonly mark?: number;
  /** SO_RCVBUF / SO_SNDBUF in bytes (the kernel doubles the value it stores, and clamps to net.core.*mem_max). */
  readonly receiveBufferBytes?: number;
  readonly sendBufferBytes?: number;
  /** TCP_CONGESTION, e.g. 'cubic', 'bbr' (must be in net.ipv4.tcp_allowed_congestion_control unless root). */
  readonly congestion?: string;
  readonly noDelay?: boolean;
  /** IPV6_V6ONLY on AF_INET6 sockets (ignored for IPv4). Unset: the sysctl default (dual stack). */
  readonly v6Only?: boolean;
}

export interface ListenerFdOptions extends SocketOptions {
  /** An IP literal: '0.0.0.0', '::', '127.0.0.1'. */
  readonly host: string;
  /** 0 lets the kernel choose (read it back with Node's server.address()). */
  readonly port: number;
  /** listen() backlog; DEFAULT_BACKLOG when unset. Pass the same value to listenOnFd(). */
  readonly backlog?: number;
  /** TCP_FASTOPEN queue length (server side); unset leaves Fast Open off. */
  readonly fastOpenQueue?: number;
}

export interface ConnectionFdOptions extends SocketOptions {
  readonly family: 4 | 6;
  /** Bind to this source address (a foreign one needs `transparent`) before connect. */
  readonly localAddress?: string;
  /** Bind to this source port (0 or unset: kernel-chosen at connect). */
  readonly localPort?: number;
}

export interface ConnectTarget {
  /** An IP literal of the socket's family (no DNS: see the header comment). */
  readonly host: string;
  readonly port: number;
}

/** setsockopt with an int (or, for a string, a byte string) value; throws SysCallError. */
export function setSocketOption(fd: number, name: SockoptName, value: number | string): void {
  const [level, opt] = SOCKOPT[name];
  let buf: Buffer;
  if (typeof value === 'string') {
    buf = Buffer.from(value, 'latin1');
  } else {
    buf = Buffer.alloc(4);
    buf.writeInt32LE(value, 0);
  }
  if ((libcFunction(PROTO.setsockopt)(fd, level, opt, buf, buf.length) as number) < 0) {
    throw sysCallError(`setsockopt(fd ${fd}, ${name})`, lastErrno());
  }
}

/** getsockopt of an int option (SO_RCVBUF reads back twice what was set). */
export function getSocketIntOption(fd: number, name: SockoptName): number {
  const [level, opt] = SOCKOPT[name];
  const buf = Buffer.alloc(4);
  const len = [4];
  if ((libcFunction(PROTO.getsockopt)(fd, level, opt, buf, len) as number) < 0) {
    throw sysCallError(`getsockopt(fd ${fd}, ${name})`, lastErrno());
  }
  return buf.readInt32LE(0);
}

/** The congestion control a socket uses (TCP_CONGESTION). */
export function getCongestion(fd: number): string {
  const [level, opt] = SOCKOPT.TCP_CONGESTION;
  const buf = Buffer.alloc(16);
  const len = [16];
  if ((libcFunction(PROTO.getsockopt)(fd, level, opt, buf, len) as number) < 0) {
    throw sysCallError(`getsockopt(fd ${fd}, TCP_CONGESTION)`, lastErrno());
  }
  const end = buf.indexOf(0);
  return buf.toString('latin1', 0, end === -1 ? buf.length : end);
}

/**
 * A listening TCP fd with `options` applied before bind. Hand it to Node with
 * listenOnFd(); Node owns (and closes) it from then on.
 */
export function createListenerFd(options: ListenerFdOptions): number {
  const family = familyOf(options.host);
  const backlog = options.backlog ?? DEFAULT_BACKLOG;
  checkInt('backlog', backlog, 1, 0x7fffffff);
  checkInt('port', options.port, 0, 0xffff);
  if (options.fastOpenQueue !== undefined) checkInt('fastOpenQueue', options.fastOpenQueue, 0, 0x7fffffff);
  checkOptions(options);
  const sockaddr = encodeSockaddr(family, options.host, options.port);
  return withNewSocket(family, (fd) => {
    applyOptions(fd, family, { reuseAddress: true, ...options });
    if (options.fastOpenQueue !== undefined) setSocketOption(fd, 'TCP_FASTOPEN', options.fastOpenQueue);
    bindFd(fd, sockaddr, `${formatHost(options.host)}:${options.port}`);
    if ((libcFunction(PROTO.listen)(fd, backlog) as number) < 0) {
      throw sysCallError(`listen(fd ${fd}, ${backlog})`, lastErrno());
    }
  });
}

/** The port a socket is bound to (getsockname): what port 0 became. */
export function boundPort(fd: number): number {
  const addr = Buffer.alloc(28);
  const len = [28];
  if ((libcFunction(PROTO.getsockname)(fd, addr, len) as number) < 0) {
    throw sysCallError(`getsockname(fd ${fd})`, lastErrno());
  }
  return addr.readUInt16BE(2);
}

/**
 * Node's server adopts a listening fd and keeps `backlog` (see the header comment for
 * why not `listen({ fd, backlog })`). Listen for 'listening' and 'error' as usual.
 */
export function listenOnFd(server: Server, fd: number, backlog = DEFAULT_BACKLOG): void {
  server.listen({ fd }, backlog);
}

/**
 * An unconnected TCP fd with `options` applied, bound first if a local address or port is
 * given. Connect it with connectSocket().
 */
export function createConnectionFd(options: ConnectionFdOptions): number {
  const family = options.family === 4 ? AF_INET : AF_INET6;
  checkOptions(options);
  let sockaddr: Buffer | undefined;
  if (options.localAddress !== undefined || options.localPort !== undefined) {
    const local = options.localAddress ?? (family === AF_INET ? '0.0.0.0' : '::');
    const localPort = options.localPort ?? 0;
    checkInt('localPort', localPort, 0, 0xffff);
    if (familyOf(local) !== family) {
      throw new SocketOptionsError(`socket factory: localAddress ${local} is not IPv${options.family}`);
    }
    sockaddr = encodeSockaddr(family, local, localPort);
  }
  return withNewSocket(family, (fd) => {
    applyOptions(fd, family, options);
    if (sockaddr !== undefined) bindFd(fd, sockaddr, `${formatHost(options.localAddress ?? '*')}:${options.localPort ?? 0}`);
  });
}

/**
 * Adopts an unconnected fd from createConnectionFd() into a Node socket (allowHalfOpen, as
 * every leg is) and starts connecting it now, in this tick. Listen for 'connect' and
 * 'error' on the result as on net.connect(). The fd is Node's from here on: it is closed
 * with the socket, and also when adoption fails.
 */
export function connectSocket(fd: number, target: ConnectTarget): Socket {
  if (!isIPv4(target.host) && !isIPv6(target.host)) {
    close(fd);
    throw new SocketOptionsError(`socket factory: connect target '${target.host}' is not an IP literal (resolve it first)`);
  }
  if (!Number.isInteger(target.port) || target.port < 1 || target.port > 0xffff) {
    close(fd);
    throw new SocketOptionsError(`socket factory: connect port must be in 1..65535, got ${target.port}`);
  }
  let socket: Socket;
  try {
    socket = new Socket({ fd, allowHalfOpen: true });
  } catch (err) {
    close(fd);
    throw err;
  }
  // Synchronously: a connect deferred past this tick loses the fd (see the header comment).
  socket.connect(target.port, target.host);
  return socket;
}

function withNewSocket(family: number, setup: (fd: number) => void): number {
  const fd = libcFunction(PROTO.socket)(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) throw sysCallError(`socket(${family === AF_INET ? 'AF_INET' : 'AF_INET6'}, SOCK_STREAM)`, lastErrno());
  try {
    setup(fd);
  } catch (err) {
    close(fd);
    throw err;
  }
  return fd;
}

function applyOptions(fd: number, family: number, o: SocketOptions): void {
  if (o.reuseAddress !== undefined) setSocketOption(fd, 'SO_REUSEADDR', o.reuseAddress ? 1 : 0);
  if (o.reusePort !== undefined) setSocketOption(fd, 'SO_REUSEPORT', o.reusePort ? 1 : 0);
  if (family === AF_INET6 && o.v6Only !== undefined) setSocketOption(fd, 'IPV6_V6ONLY', o.v6Only ? 1 : 0);
  if (o.transparent !== undefined) {
    setSocketOption(fd, family === AF_INET ? 'IP_TRANSPARENT' : 'IPV6_TRANSPARENT', o.transparent ? 1 : 0);
  }
  if (o.mark !== undefined) setSocketOption(fd, 'SO_MARK', o.mark);
  if (o.receiveBufferBytes !== undefined) setSocketOption(fd, 'SO_RCVBUF', o.receiveBufferBytes);
  if (o.sendBufferBytes !== undefined) setSocketOption(fd, 'SO_SNDBUF', o.sendBufferBytes);
  if (o.congestion !== undefined) setSocketOption(fd, 'TCP_CONGESTION', o.congestion);
  if (o.noDelay !== undefined) setSocketOption(fd, 'TCP_NODELAY', o.noDelay ? 1 : 0);
}

function checkOptions(o: SocketOptions): void {
  if (o.mark !== undefined) checkInt('mark', o.mark, 0, 0xffff_ffff);
  if (o.receiveBufferBytes !== undefined) checkInt('receiveBufferBytes', o.receiveBufferBytes, 1, 0x3fff_ffff);
  if (o.sendBufferBytes !== undefined) checkInt('sendBufferBytes', o.sendBufferBytes, 1, 0x3fff_ffff);
  // TCP_CA_NAME_MAX is 16 bytes including the NUL.
  if (o.congestion !== undefined && !/^[a-z0-9_]{1,15}$/.test(o.congestion)) {
    throw new SocketOptionsError(`socket factory: congestion '${o.congestion}' is not a congestion-control name`);
  }
}

function checkInt(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new SocketOptionsError(`socket factory: ${name} must be an integer in ${min}..${max}, got ${value}`);
  }
}

function familyOf(host: string): number {
  if (isIPv4(host)) return AF_INET;
  if (isIPv6(host)) return AF_INET6;
  throw new SocketOptionsError(`socket factory: '${host}' is not an IP literal`);
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function bindFd(fd: number, sockaddr: Buffer, what: string): void {
  if ((libcFunction(PROTO.bind)(fd, sockaddr, sockaddr.length) as number) < 0) {
    throw sysCallError(`bind(fd ${fd}, ${what})`, lastErrno());
  }
}

/** struct sockaddr_in (16 bytes) or sockaddr_in6 (28 bytes); port and address in network order. */
function encodeSockaddr(family: number, host: string, port: number): Buffer {
  if (family === AF_INET) {
    const b = Buffer.alloc(16);
    b.writeUInt16LE(AF_INET, 0);
    b.writeUInt16BE(port, 2);
    host.split('.').forEach((octet, i) => { b[4 + i] = Number(octet); });
    return b;
  }
  const b = Buffer.alloc(28);
  b.writeUInt16LE(AF_INET6, 0);
  b.writeUInt16BE(port, 2);
  ipv6Bytes(host).copy(b, 8);
  return b;
}

function ipv6Bytes(text: string): Buffer {
  const zone = text.indexOf('%');
  const bare = zone === -1 ? text : text.slice(0, zone);
  let groups: string[];
  let tail: number[] = [];
  let body = bare;
  const lastColon = body.lastIndexOf(':');
  if (body.slice(lastColon + 1).includes('.')) {
    tail = body.slice(lastColon + 1).split('.').map(Number);
    body = `${body.slice(0, lastColon + 1)}0:0`;
  }
  const [head = '', rest] = body.split('::');
  if (rest === undefined) {
    groups = head.split(':');
  } else {
    const h = head === '' ? [] : head.split(':');
    const r = rest === '' ? [] : rest.split(':');
    groups = [...h, ...Array<string>(8 - h.length - r.length).fill('0'), ...r];
  }
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => { out.writeUInt16BE(parseInt(g, 16), i * 2); });
  tail.forEach((octet, i) => { out[12 + i] = octet; });
  return out;
}
