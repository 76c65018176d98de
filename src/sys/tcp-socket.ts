/**
 * Socket options on sockets that Node's `net` created. Node hides the fd; on Linux a
 * TCP handle exposes it as `_handle.fd`, read here and nowhere else.
 */
import type { Socket } from 'node:net';
import { libcFunction, lastErrno } from './libc.js';
import { errnoName, sysCallError } from './errno.js';

const SOL_SOCKET = 1;
const SO_ERROR = 4;
const SO_LINGER = 13;


const PROTO = {
  getsockopt: 'int getsockopt(int fd, int level, int name, _Out_ void *val, _Inout_ uint32_t *len)',
  setsockopt: 'int setsockopt(int fd, int level, int name, const void *val, uint32_t len)',
} as const;

/** The socket's fd, or undefined once Node has closed it (or on a non-TCP handle). */
export function socketFd(socket: Socket): number | undefined {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** Reads and clears the socket's pending error (SO_ERROR): 0, or an errno such as ECONNRESET. */
export function takeSocketError(fd: number): number {
  const value = Buffer.alloc(4);
  const len = [4];
  if ((libcFunction(PROTO.getsockopt)(fd, SOL_SOCKET, SO_ERROR, value, len) as number) < 0) {
    throw sysCallError(`getsockopt(fd ${fd}, SO_ERROR)`, lastErrno());
  }
  return value.readInt32LE(0);
}

/**
 * Why a socket that reported EOF really ended, or undefined for a FIN.
 *
 * libuv reports EOF, without reading again, when epoll says POLLHUP after a short read.
 * A reset right behind data sets POLLHUP too, so a RST can surface as 'end'. Any pending
 * error (ECONNRESET, ECONNABORTED, ETIMEDOUT, EHOSTUNREACH, ...) means the connection did
 * not end with a FIN; its errno name is returned. Reads (and clears) SO_ERROR: call it
 * once, at EOF. Without FFI it trusts libuv and returns undefined.
 */
export function pendingSocketError(socket: Socket): string | undefined {
  const fd = socketFd(socket);
  if (fd === undefined) return undefined;
  let errno: number;
  try {
    errno = takeSocketError(fd);
  } catch {
    return undefined;
  }
  return errno === 0 ? undefined : errnoName(errno);
}

/** SO_LINGER: `{on, seconds: 0}` makes close() send RST instead of FIN. */
export function setLinger(fd: number, on: boolean, seconds: number): void {
  const value = Buffer.alloc(8);
  value.writeInt32LE(on ? 1 : 0, 0);
  value.writeInt32LE(seconds, 4);
  if ((libcFunction(PROTO.setsockopt)(fd, SOL_SOCKET, SO_LINGER, value, 8) as number) < 0) {
    throw sysCallError(`setsockopt(fd ${fd}, SO_LINGER)`, lastErrno());
  }
}

/**
 * Loads koffi and binds the calls above now, so the first connection does not pay for
 * it (~5 ms here); false when the FFI is unavailable (callers then degrade, see
 * src/relay/split-connection.ts).
 */
export function prepareSocketCalls(): boolean {
  try {
    libcFunction(PROTO.getsockopt);
    libcFunction(PROTO.setsockopt);
    return true;
  } catch {
    return false;
  }
}
