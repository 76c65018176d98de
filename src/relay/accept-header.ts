import type { Socket } from 'node:net';
import type { HeaderAuth } from '../protocol/header-auth.js';
import type { ReplayCheck } from '../protocol/replay-guard.js';
import { HeaderDecoder, type DecodedHeader } from '../protocol/header-decoder.js';
import { HeaderTimeoutError, HeaderTruncatedError, PeerResetError } from '../errors.js';
import { pendingSocketError } from '../sys/index.js';

/**
 * Reads the relay header from a peer connection. Calls back once: with the header
 * (bytes after it are put back on the socket, which is left paused), or with the
 * error that rejects the connection. Nothing is connected before the header verifies.
 */
export function acceptHeader(
  socket: Socket,
  auth: HeaderAuth,
  replay: ReplayCheck,
  timeoutMs: number,
  done: (err: Error | undefined, header?: DecodedHeader) => void,
): void {
  const decoder = new HeaderDecoder(auth, replay);
  let settled = false;
  const finish = (err: Error | undefined, header?: DecodedHeader): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('end', onEnd);
    socket.off('close', onClose);
    socket.pause();
    if (header !== undefined && header.rest.length > 0) socket.unshift(header.rest);
    done(err, header);
  };
  const onData = (chunk: Buffer): void => {
    try {
      const header = decoder.push(chunk);
      if (header !== undefined) finish(undefined, header);
    } catch (err) {
      finish(err as Error);
    }
  };
  const onEnd = (): void => {
    const reset = pendingSocketError(socket);
    if (reset !== undefined) finish(new PeerResetError(`peer reset the connection (${reset}) after ${decoder.bufferedBytes} header bytes`));
    else finish(new HeaderTruncatedError(`peer closed after ${decoder.bufferedBytes} bytes, before a complete header`));
  };
  // Gone without a verdict from us (reset, error, idle timeout): the connection has
  // already failed and been counted; just stop waiting for the header.
  const onClose = (): void => {
    settled = true;
    clearTimeout(timer);
  };
  const timer = setTimeout(() => {
    finish(new HeaderTimeoutError(`no complete header within ${timeoutMs} ms (${decoder.bufferedBytes} bytes received)`));
  }, timeoutMs);
  socket.on('data', onData);
  socket.on('end', onEnd);
  socket.once('close', onClose);
}
