/**
 * The peer listener (--accept) with pooling on, at R_S: the target comes from a v1 header
 * (a freshly dialled connection, unchanged) or, on a pooled connection, from a v2 TARGET
 * frame that follows an AUTH frame, possibly much later (docs/protocol.md section 13).
 *
 * Until its first frame verifies, a connection proves nothing: it stays on the short
 * header deadline (--header-timeout) and counts as pending (admission.ts), as today. Once
 * its AUTH frame verifies it is an *authenticated idle* connection:
 * - no header deadline: it waits for its TARGET frame as long as the sender keeps it
 *   (the sender retires it at its max idle age, 60 s by default); `idleBackstopMs` only
 *   bounds a sender that vanished without a FIN;
 * - `onIdle` tells the wiring, which releases it from the pending set, so idle pooled
 *   connections neither are reset by the header deadline nor crowd out real ones;
 * - at most `maxIdlePerPeer` per peer (an IPv4 address or IPv6 /64, as admission counts
 *   sources); one more is refused with a reset (IdleLimitError), and the sender's pool
 *   backs off.
 * The replay guard sees both frames' nonces: a replayed AUTH frame is refused, and a
 * TARGET frame carries the chain nonce, so the loop cut-off holds for pooled connections.
 */
import type { Socket } from 'node:net';
import type { TargetSource, Destination, HeaderSourceOptions } from './target-source.js';
import { sourceKey } from './admission.js';
import { FirstFrameDecoder, TargetFrameDecoder } from '../protocol/pool-frame-decoder.js';
import type { DecodedHeader } from '../protocol/header-decoder.js';
import { pendingSocketError } from '../sys/index.js';
import {
  HeaderTimeoutError, HeaderTruncatedError, IdleClosedError, IdleLimitError, PeerResetError,
} from '../errors.js';

export interface PooledSourceOptions extends HeaderSourceOptions {
  /** Authenticated idle connections one peer may hold on this listener (per worker). */
  readonly maxIdlePerPeer: number;
  /** An idle connection with no TARGET frame after this long is closed (IdleClosedError). */
  readonly idleBackstopMs: number;
  /** The connection's AUTH frame verified: it is idle and no longer pending. */
  readonly onIdle?: (socket: Socket) => void;
}

export const DEFAULT_MAX_IDLE_PER_PEER = 256;
/** Well beyond the sender's 60 s max idle age: only a sender that vanished reaches it. */
export const DEFAULT_IDLE_BACKSTOP_MS = 600_000;

export class PooledTargetSource implements TargetSource {
  readonly kind = 'header';
  readonly knownAtSyn = false;
  readonly #o: PooledSourceOptions;
  readonly #idleByPeer = new Map<string, number>();

  constructor(options: PooledSourceOptions) {
    this.#o = options;
  }

  /** Authenticated idle connections now, for one peer address or in all. */
  idleCount(address?: string): number {
    if (address !== undefined) return this.#idleByPeer.get(sourceKey(address)) ?? 0;
    let n = 0;
    for (const v of this.#idleByPeer.values()) n += v;
    return n;
  }

  /** Never settles if the socket goes away first (its connection has failed already). */
  targetOf(socket: Socket): Promise<Destination> {
    return new Promise((resolve, reject) => {
      new FrameReader(socket, this.#o, this.#idleByPeer, (err, header) => {
        if (err !== undefined) reject(err);
        else if (header !== undefined) resolve({ target: header.target, requestedByPeer: true, nonce: header.nonce });
      });
    });
  }
}

type Done = (err: Error | undefined, header?: DecodedHeader) => void;

/** Reads one connection's frames: first frame on the header deadline, then (pooled) the TARGET frame. */
class FrameReader {
  readonly #socket: Socket;
  readonly #o: PooledSourceOptions;
  readonly #idleByPeer: Map<string, number>;
  readonly #done: Done;
  readonly #first: FirstFrameDecoder;
  #second: TargetFrameDecoder | undefined;
  #peerKey: string | undefined;
  #timer: NodeJS.Timeout;
  #settled = false;
  readonly #onData = (chunk: Buffer): void => { this.#data(chunk); };
  readonly #onEnd = (): void => { this.#end(); };
  readonly #onClose = (): void => { this.#closed(); };

  constructor(socket: Socket, o: PooledSourceOptions, idleByPeer: Map<string, number>, done: Done) {
    this.#socket = socket;
    this.#o = o;
    this.#idleByPeer = idleByPeer;
    this.#done = done;
    this.#first = new FirstFrameDecoder(o.auth, o.replay);
    this.#timer = setTimeout(() => {
      this.#finish(new HeaderTimeoutError(`no complete header within ${o.headerTimeoutMs} ms (${this.#first.bufferedBytes} bytes received)`));
    }, o.headerTimeoutMs);
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.once('close', this.#onClose);
  }

  #data(chunk: Buffer): void {
    try {
      if (this.#second !== undefined) {
        const header = this.#second.push(chunk);
        if (header !== undefined) this.#finish(undefined, header);
        return;
      }
      const frame = this.#first.push(chunk);
      if (frame === undefined) return;
      if (frame.kind === 'header') {
        this.#finish(undefined, frame.header);
        return;
      }
      clearTimeout(this.#timer);
      const key = sourceKey(this.#socket.remoteAddress);
      const idle = this.#idleByPeer.get(key) ?? 0;
      if (idle >= this.#o.maxIdlePerPeer) {
        this.#finish(new IdleLimitError(`peer ${this.#socket.remoteAddress ?? '?'} already holds ${idle} authenticated idle connections (limit ${this.#o.maxIdlePerPeer})`));
        return;
      }
      this.#idleByPeer.set(key, idle + 1);
      this.#peerKey = key;
      this.#second = new TargetFrameDecoder(this.#o.auth, this.#o.replay, frame.auth.tag);
      this.#timer = setTimeout(() => {
        this.#finish(new IdleClosedError(`authenticated idle connection sent no TARGET frame within ${this.#o.idleBackstopMs} ms`));
      }, this.#o.idleBackstopMs);
      this.#timer.unref();
      this.#o.onIdle?.(this.#socket);
      if (frame.auth.rest.length > 0) this.#data(frame.auth.rest);
    } catch (err) {
      this.#finish(err as Error);
    }
  }

  #end(): void {
    const reset = pendingSocketError(this.#socket);
    if (reset !== undefined) this.#finish(new PeerResetError(`peer reset the connection (${reset}) before its target`));
    else if (this.#second !== undefined) {
      this.#finish(new IdleClosedError(`authenticated idle connection closed by the peer after ${this.#second.bufferedBytes} TARGET bytes`));
    } else this.#finish(new HeaderTruncatedError(`peer closed after ${this.#first.bufferedBytes} bytes, before a complete header`));
  }

  /** Gone without a verdict from us: the connection has failed already; stop waiting. */
  #closed(): void {
    this.#settled = true;
    this.#cleanup();
  }

  #finish(err: Error | undefined, header?: DecodedHeader): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#cleanup();
    this.#socket.pause();
    if (header !== undefined && header.rest.length > 0) this.#socket.unshift(header.rest);
    this.#done(err, header);
  }

  #cleanup(): void {
    clearTimeout(this.#timer);
    this.#socket.off('data', this.#onData);
    this.#socket.off('end', this.#onEnd);
    this.#socket.off('close', this.#onClose);
    if (this.#peerKey !== undefined) {
      const n = (this.#idleByPeer.get(this.#peerKey) ?? 1) - 1;
      if (n <= 0) this.#idleByPeer.delete(this.#peerKey);
      else this.#idleByPeer.set(this.#peerKey, n);
      this.#peerKey = undefined;
    }
  }
}
