/**
 * Socket options on sockets that Node's `net` created. Node hides the fd; on Linux a
 * TCP handle exposes it as `_handle.fd`, read here and nowhere else.
 */
import type { Socket } from 'node:net';
import { libcFunction, lastErrno } from './libc.js';
import { errnoName, sysCallError } from './errno.js';
import { SOCKET_CALL as PROTO, SOL_SOCKET } from './socket-calls.js';

const SO_ERROR = 4;
const SO_LINGER = 13;

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
 * Closes a socket with RST (an abort the peer cannot mistake for a clean end), whatever
 * state it is in.
 *
 * Not through Node's resetAndDestroy() when it can be helped: that is libuv's
 * uv_tcp_close_reset(), which refuses with EINVAL while a shutdown (our end(), a FIN
 * queued in one direction) is still pending, and Node then neither closes the fd nor
 * emits 'close': the socket leaks, and Node's exit loops on the half-closed handle.
 * SO_LINGER {1, 0} followed by a plain close() sends RST in every state. Without FFI,
 * resetAndDestroy() only when no shutdown can be pending, else destroy(): that direction
 * was already ending with a FIN, and unread data still makes the kernel send RST.
 */
export function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  // Also while Node still calls it connecting: the kernel may have completed the
  // handshake already ('connect' not yet emitted), and a plain close would send a FIN.
  // With SO_LINGER {1, 0}, close() resets an established socket and drops a SYN_SENT one.
  const fd = socketFd(socket);
  if (fd !== undefined) {
    try {
      setLinger(fd, true, 0);
      socket.destroy();
      return;
    } catch {
      // No FFI: fall through.
    }
  }
  // No descriptor yet (a name still being resolved): nothing was sent. And without the FFI,
  // resetAndDestroy() would wait for 'connect'.
  if (socket.connecting) {
    socket.destroy();
    return;
  }
  if (socket.writableEnded && !socket.writableFinished) socket.destroy();
  else socket.resetAndDestroy();
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
