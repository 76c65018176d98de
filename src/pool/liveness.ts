/**
 * Dead-on-take detection: is an idle pooled connection still worth handing out?
 *
 * Node learns of a peer's FIN or RST only when its event loop gets to the socket's read
 * event, and a take can run before that (the peer restarted a moment ago). The kernel
 * already knows: the connection has left ESTABLISHED (CLOSE_WAIT after a FIN, CLOSE after
 * a reset) or has an error pending. So a take asks Node first, then the kernel.
 */
import type { Socket } from 'node:net';
import { TcpState, pendingSocketError, socketFd, tcpInfo } from '../sys/index.js';

const STATE_NAMES = new Map<number, string>(Object.entries(TcpState).map(([name, value]) => [value, name]));

/** Why `socket` must not be handed out, or undefined when it looks alive. */
export function deadReason(socket: Socket): string | undefined {
  if (socket.destroyed) return 'destroyed';
  if (socket.connecting) return 'still connecting';
  if (socket.readableEnded || !socket.writable) return 'ended';
  // The peer never writes first on a pooled connection: anything buffered is a protocol error.
  if (socket.readableLength > 0) return 'unexpected data from the peer';
  const fd = socketFd(socket);
  if (fd === undefined) return undefined;
  const error = pendingSocketError(socket);
  if (error !== undefined) return error;
  let state: number;
  try {
    state = tcpInfo(fd).state;
  } catch {
    return undefined;
  }
  return state === TcpState.ESTABLISHED ? undefined : `kernel state ${STATE_NAMES.get(state) ?? state}`;
}
