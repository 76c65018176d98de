/**
 * One peer's pool of pre-established relay connections, in one worker (paper §2,
 * improvement 3; §3 "Pre-established connections"). Each worker has its own pools, with
 * no lock shared between workers: the paper's per-core magazines.
 *
 * - Watermarks. The pool keeps a target number of ready (and opening) connections: it
 *   starts at the low watermark, grows by one on every miss (a take that found the pool
 *   empty) up to the high watermark, and shrinks by one each time a connection ages out
 *   unused. A take triggers an asynchronous refill to the target.
 * - Use once. A connection is handed out once and never comes back.
 * - Authentication. Each connection writes its AUTH frame as it opens (docs/protocol.md
 *   section 13); the TARGET frame goes out on take, with the client's first bytes.
 * - Staleness. A ready connection older than maxIdleMs is closed by a sweep and never
 *   handed out; a take skips connections that Node or the kernel know to be closed or
 *   reset (liveness.ts). Every close while idle is counted as stale.
 * - A peer that is down: failed refills back off exponentially, capped (backoff.ts); a
 *   take then misses and the caller dials a fresh connection, so an empty pool is never
 *   a failure.
 * - Nagle off (the paper saw 200 ms of TTFB otherwise), keepalive on.
 */
import type { Socket } from 'node:net';
import type { PeerSpec } from '../config/relay-config.js';
import { encodeAuthFrame } from '../protocol/pool-frame-encoder.js';
import { Backoff } from './backoff.js';
import { deadReason } from './liveness.js';
import { verifyPoolTuning, type PeerPoolOptions } from './pool-options.js';

export interface PooledConnection {
  /** Connected, authenticated, paused; nothing of the target written yet. */
  readonly socket: Socket;
  /** The AUTH frame's tag: the TARGET frame on this socket is bound to it. */
  readonly authTag: Buffer;
  /** How long it waited in the pool, ms. */
  readonly idleMs: number;
}

/** Computed when read (STYLE.md: stats are not kept per event beyond counters). */
export interface PeerPoolStats {
  readonly peer: string;
  /** Ready connections. */
  readonly size: number;
  /** Connections being opened. */
  readonly opening: number;
  /** What the pool refills to now (between the watermarks). */
  readonly target: number;
  readonly takes: number;
  /** Takes that found no usable connection (the caller dialled a fresh one). */
  readonly misses: number;
  /** Connections that died while idle, or were found dead on take. */
  readonly stale: number;
  /** Connections closed unused because they reached maxIdleMs. */
  readonly expired: number;
  readonly refillFailures: number;
  /** Consecutive failures now; > 0 means the pool is backing off. */
  readonly backoffFailures: number;
  readonly opened: number;
}

interface Entry {
  readonly socket: Socket;
  readonly authTag: Buffer;
  readonly openedAt: number;
  readyAt: number;
  readonly onIdleEvent: () => void;
}

const monotonicMs = (): number => performance.now();
function noop(): void { /* errors of a socket being discarded */ }

export class PeerPool {
  readonly peer: PeerSpec;
  #o: PeerPoolOptions;
  readonly #now: () => number;
  readonly #backoff: Backoff;
  /** Oldest first: takes pop the youngest, the sweep retires from the front. */
  #ready: Entry[] = [];
  readonly #opening = new Set<Socket>();
  #target: number;
  #retryTimer: NodeJS.Timeout | undefined;
  #sweepTimer: NodeJS.Timeout | undefined;
  #refillQueued = false;
  #closed = false;
  #started = false;
  #takes = 0;
  #misses = 0;
  #stale = 0;
  #expired = 0;
  #refillFailures = 0;
  #opened = 0;

  constructor(peer: PeerSpec, options: PeerPoolOptions) {
    verifyPoolTuning(options);
    this.peer = peer;
    this.#o = options;
    this.#now = options.now ?? monotonicMs;
    this.#backoff = new Backoff(options.backoffInitialMs, options.backoffMaxMs);
    this.#target = options.lowWatermark;
  }

  /** Starts filling to the low watermark, and the idle-age sweep. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#startSweep();
    this.#refill();
  }

  #startSweep(): void {
    const every = Math.max(10, Math.min(1000, Math.floor(this.#o.maxIdleMs / 4)));
    this.#sweepTimer = setInterval(() => { this.#sweep(); }, every);
    this.#sweepTimer.unref();
  }

  /**
   * The youngest usable connection, or undefined (a miss: dial a fresh one). Either way
   * a refill is queued.
   */
  take(): PooledConnection | undefined {
    const now = this.#now();
    let entry: Entry | undefined;
    while ((entry = this.#ready.pop()) !== undefined) {
      this.#detach(entry);
      const idleMs = now - entry.readyAt;
      if (idleMs >= this.#o.maxIdleMs) {
        this.#expired++;
        this.#discard(entry.socket);
        continue;
      }
      if (deadReason(entry.socket) !== undefined) {
        this.#stale++;
        this.#discard(entry.socket);
        continue;
      }
      this.#takes++;
      this.#backoff.succeed();
      this.#queueRefill();
      return { socket: entry.socket, authTag: entry.authTag, idleMs };
    }
    this.#misses++;
    this.#target = Math.min(this.#o.highWatermark, this.#target + 1);
    this.#queueRefill();
    return undefined;
  }

  stats(): PeerPoolStats {
    return {
      peer: this.peer.name,
      size: this.#ready.length,
      opening: this.#opening.size,
      target: this.#target,
      takes: this.#takes,
      misses: this.#misses,
      stale: this.#stale,
      expired: this.#expired,
      refillFailures: this.#refillFailures,
      backoffFailures: this.#backoff.failures,
      opened: this.#opened,
    };
  }

  /**
   * New watermarks and idle age, in place (a run-time change, the paper's procfs knob):
   * the ready connections stay; the refill target is brought within the new watermarks;
   * ready ones above the new high watermark are closed, oldest first; the sweep runs at
   * the new age's pace. Throws ConfigError (and changes nothing) on bad values.
   */
  retune(t: Pick<PeerPoolOptions, 'lowWatermark' | 'highWatermark' | 'maxIdleMs'>): void {
    const next = { ...this.#o, lowWatermark: t.lowWatermark, highWatermark: t.highWatermark, maxIdleMs: t.maxIdleMs };
    verifyPoolTuning(next);
    this.#o = next;
    this.#target = Math.min(t.highWatermark, Math.max(t.lowWatermark, this.#target));
    while (this.#ready.length + this.#opening.size > t.highWatermark) {
      const entry = this.#ready.shift();
      if (entry === undefined) break;
      this.#detach(entry);
      this.#discard(entry.socket);
    }
    if (this.#sweepTimer !== undefined) {
      clearInterval(this.#sweepTimer);
      this.#sweepTimer = undefined;
      this.#startSweep();
    }
    this.#queueRefill();
  }

  /** The newest ready connection's socket, to sample its TCP_INFO (not taken). */
  idleSocket(): Socket | undefined {
    return this.#ready.at(-1)?.socket;
  }

  /** Closes every ready and opening connection; takes miss from now on. */
  close(): void {
    this.#closed = true;
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    if (this.#sweepTimer !== undefined) clearInterval(this.#sweepTimer);
    this.#retryTimer = undefined;
    this.#sweepTimer = undefined;
    for (const entry of this.#ready.splice(0)) {
      this.#detach(entry);
      this.#discard(entry.socket);
    }
    for (const socket of this.#opening) this.#discard(socket);
    this.#opening.clear();
  }

  #queueRefill(): void {
    if (this.#refillQueued || this.#closed || !this.#started) return;
    this.#refillQueued = true;
    setImmediate(() => {
      this.#refillQueued = false;
      this.#refill();
    });
  }

  #refill(): void {
    if (this.#closed || this.#retryTimer !== undefined) return;
    while (this.#ready.length + this.#opening.size < this.#target) {
      if (!this.#open()) return;
    }
  }

  /** Opens one connection; false when the opener failed (the pool is now backing off). */
  #open(): boolean {
    let socket: Socket;
    try {
      socket = this.#o.opener(this.peer);
    } catch {
      this.#failed();
      return false;
    }
    this.#opening.add(socket);
    this.#opened++;
    const frame = encodeAuthFrame(this.#o.auth);
    socket.setNoDelay(true);
    socket.setKeepAlive(this.#o.keepaliveMs > 0, this.#o.keepaliveMs);
    socket.setTimeout(this.#o.connectTimeoutMs);
    const onTimeout = (): void => { socket.destroy(); };
    const onEarlyClose = (): void => {
      this.#opening.delete(socket);
      if (!this.#closed) this.#failed();
    };
    socket.on('error', noop);
    socket.once('timeout', onTimeout);
    socket.once('close', onEarlyClose);
    socket.once('connect', () => {
      socket.off('timeout', onTimeout);
      socket.off('close', onEarlyClose);
      socket.setTimeout(0);
      this.#opening.delete(socket);
      if (this.#closed) {
        this.#discard(socket);
        return;
      }
      this.#ready.push(this.#idle(socket, frame.tag));
    });
    // Queued by Node until the handshake completes: the frame is the first segment after it.
    socket.write(frame.bytes);
    return true;
  }

  /** A ready connection: read (so a FIN, RST or stray byte is seen at once), never written. */
  #idle(socket: Socket, authTag: Buffer): Entry {
    const now = this.#now();
    const entry: Entry = {
      socket,
      authTag,
      openedAt: now,
      readyAt: now,
      onIdleEvent: () => { this.#lostWhileIdle(entry); },
    };
    socket.on('data', entry.onIdleEvent);
    socket.on('end', entry.onIdleEvent);
    socket.on('close', entry.onIdleEvent);
    return entry;
  }

  #detach(entry: Entry): void {
    // Paused first: a flowing socket with no 'data' listener would drop what it reads.
    entry.socket.pause();
    entry.socket.off('data', entry.onIdleEvent);
    entry.socket.off('end', entry.onIdleEvent);
    entry.socket.off('close', entry.onIdleEvent);
  }

  #lostWhileIdle(entry: Entry): void {
    const i = this.#ready.indexOf(entry);
    if (i === -1) return;
    this.#ready.splice(i, 1);
    this.#detach(entry);
    this.#discard(entry.socket);
    this.#stale++;
    if (this.#now() - entry.openedAt < this.#o.healthyAfterMs) this.#failed();
    else this.#queueRefill();
  }

  #sweep(): void {
    const now = this.#now();
    let retired = 0;
    while (this.#ready.length > 0) {
      const oldest = this.#ready[0];
      if (oldest === undefined || now - oldest.readyAt < this.#o.maxIdleMs) break;
      this.#ready.shift();
      this.#detach(oldest);
      this.#discard(oldest.socket);
      this.#expired++;
      retired++;
    }
    if (retired > 0) {
      this.#target = Math.max(this.#o.lowWatermark, this.#target - retired);
      this.#queueRefill();
    }
    // Connections that lived long enough end a run of failures.
    if (this.#backoff.failures > 0 && this.#retryTimer === undefined) {
      const first = this.#ready[0];
      if (first !== undefined && now - first.openedAt >= this.#o.healthyAfterMs) this.#backoff.succeed();
    }
  }

  #failed(): void {
    this.#refillFailures++;
    if (this.#retryTimer !== undefined || this.#closed) return;
    const waitMs = this.#backoff.fail();
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#refill();
    }, waitMs);
    this.#retryTimer.unref();
  }

  #discard(socket: Socket): void {
    socket.on('error', noop);
    socket.destroy();
  }
}
