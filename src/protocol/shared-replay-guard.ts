/**
 * The replay guard (replay-guard.ts) in shared memory, so that every worker thread of
 * one relay refuses a header any of them has seen: a replay sent from another source
 * port is steered to another worker (src/net/steer.ts), and a per-worker guard would
 * let it through. Since a relay passes the incoming nonce on to the next relay, this
 * guard is also the routing-loop cut-off, which therefore holds across workers too.
 *
 * Same semantics and errors as ReplayGuard: a skew window on the timestamp, two
 * generations of nonces on a fixed 2 x skew grid (each nonce kept 2 to 4 x skew), the
 * first 48 bits of the nonce as its identity, and fail closed (ReplayCacheFullError)
 * when `maxEntries` are remembered.
 *
 * Layout of the SharedArrayBuffer (a worker attaches to the same buffer):
 *   Int32  [0] lock: 0 free, else the holder's owner id (threadId + 1)
 *          [1] which table is current (0 or 1)
 *          [2], [3] entries in table 0 and table 1
 *          [4] capacity (slots per table, a power of two), [5] maxEntries
 *   Float64 [4] rotatedAt (ms), [5] maxClockSkewMs                (bytes 32..47)
 *   Float64 table 0, then table 1: open addressing, linear probing; a slot holds
 *           id + 1 (0 is empty), where id is the nonce's first 48 bits (exact in a double)
 *
 * Each table has 2 x maxEntries slots rounded up to a power of two, so probing stays
 * short at the fail-closed bound: 32 MiB of address space for the default 1M entries,
 * of which only the pages touched are resident. Rotation clears the reused table by
 * reading it and writing only the slots in use, so untouched pages stay untouched.
 *
 * The lock is an Atomics spin-then-wait lock around the lookup and insert (a few
 * hundred nanoseconds). A worker terminated while it holds the lock would leave it held,
 * so the lock word records the holder, and the supervisor calls releaseIfHeldBy() for a
 * dead worker; at worst that worker's one insert is half done, which costs a count.
 */
import { threadId } from 'node:worker_threads';
import { ConfigError, HeaderReplayError, HeaderStaleError, ReplayCacheFullError } from '../errors.js';
import type { ReplayCheck } from './replay-guard.js';

const LOCK = 0;
const CURRENT = 1;
const COUNT0 = 2;
const CAPACITY = 4;
const MAX_ENTRIES = 5;
const F_ROTATED_AT = 4;
const F_SKEW = 5;
const HEADER_BYTES = 48;

export interface SharedReplayGuardOptions {
  readonly maxClockSkewMs: number;
  /** Fail closed beyond this many remembered nonces (default 1,000,000, as ReplayGuard). */
  readonly maxEntries?: number;
  readonly now?: () => number;
}

export class SharedReplayGuard implements ReplayCheck {
  /** Hand this to a worker (postMessage / workerData) and attach() there. */
  readonly buffer: SharedArrayBuffer;
  readonly #i32: Int32Array;
  readonly #f64: Float64Array;
  readonly #tables: readonly [Float64Array, Float64Array];
  readonly #now: () => number;
  readonly #owner: number;
  readonly #skewMs: number;
  readonly #maxEntries: number;
  readonly #mask: number;

  constructor(options: SharedReplayGuardOptions | SharedArrayBuffer, now?: () => number) {
    let buffer: SharedArrayBuffer;
    if (options instanceof SharedArrayBuffer) {
      buffer = options;
    } else {
      if (!(options.maxClockSkewMs > 0)) throw new ConfigError(`maxClockSkewMs must be > 0, not ${options.maxClockSkewMs}`);
      const maxEntries = options.maxEntries ?? 1_000_000;
      if (!(maxEntries >= 1) || !Number.isInteger(maxEntries) || maxEntries > 1 << 26) {
        throw new ConfigError(`maxEntries must be an integer in 1..${1 << 26}, not ${maxEntries}`);
      }
      const capacity = 2 ** Math.ceil(Math.log2(Math.max(4, 2 * maxEntries)));
      buffer = new SharedArrayBuffer(HEADER_BYTES + 2 * capacity * 8);
      const i32 = new Int32Array(buffer, 0, HEADER_BYTES / 4);
      const f64 = new Float64Array(buffer, 0, HEADER_BYTES / 8);
      i32[CAPACITY] = capacity;
      i32[MAX_ENTRIES] = maxEntries;
      f64[F_SKEW] = options.maxClockSkewMs;
      f64[F_ROTATED_AT] = (options.now ?? now ?? Date.now)();
      now = options.now ?? now;
    }
    this.buffer = buffer;
    this.#i32 = new Int32Array(buffer, 0, HEADER_BYTES / 4);
    this.#f64 = new Float64Array(buffer, 0, HEADER_BYTES / 8);
    const capacity = this.#i32[CAPACITY] ?? 0;
    this.#tables = [new Float64Array(buffer, HEADER_BYTES, capacity), new Float64Array(buffer, HEADER_BYTES + capacity * 8, capacity)];
    this.#mask = capacity - 1;
    this.#skewMs = this.#f64[F_SKEW] ?? 0;
    this.#maxEntries = this.#i32[MAX_ENTRIES] ?? 0;
    this.#now = now ?? Date.now;
    this.#owner = threadId + 1;
  }

  /** The guard of another thread's buffer (a worker's view of the supervisor's guard). */
  static attach(buffer: SharedArrayBuffer, now?: () => number): SharedReplayGuard {
    return new SharedReplayGuard(buffer, now);
  }

  get size(): number {
    return (Atomics.load(this.#i32, COUNT0) + Atomics.load(this.#i32, COUNT0 + 1));
  }

  /** Throws HeaderStaleError, HeaderReplayError or ReplayCacheFullError; otherwise records the nonce. */
  check(timestampMs: number, nonce: Buffer): void {
    const now = this.#now();
    const skew = Math.abs(now - timestampMs);
    if (!(skew <= this.#skewMs)) {
      throw new HeaderStaleError(`header timestamp is ${Math.round(skew)} ms from this relay's clock (limit ${this.#skewMs} ms)`);
    }
    const id = nonce.readUIntBE(0, 6);
    this.#lock();
    let outcome: 0 | 1 | 2;
    try {
      outcome = this.#checkLocked(now, id);
    } finally {
      this.#unlock();
    }
    if (outcome === 1) throw new HeaderReplayError('header nonce was seen before (replayed header)');
    if (outcome === 2) {
      throw new ReplayCacheFullError(`replay cache holds ${this.#maxEntries} nonces; refusing new headers until it rotates`);
    }
  }

  /**
   * Frees the lock if the thread with `threadId` holds it: the supervisor calls this
   * when that worker died (a terminated thread never unlocks). True if it was held.
   */
  releaseIfHeldBy(deadThreadId: number): boolean {
    const released = Atomics.compareExchange(this.#i32, LOCK, deadThreadId + 1, 0) === deadThreadId + 1;
    if (released) Atomics.notify(this.#i32, LOCK);
    return released;
  }

  /** 0: recorded, 1: a replay, 2: full. Errors are built after the lock is released. */
  #checkLocked(now: number, id: number): 0 | 1 | 2 {
    const i32 = this.#i32;
    const f64 = this.#f64;
    const rotatedAt = f64[F_ROTATED_AT] ?? now;
    const generations = Math.floor((now - rotatedAt) / (2 * this.#skewMs));
    let current = i32[CURRENT] ?? 0;
    if (generations >= 1) {
      // The previous table is dropped; two or more generations drop the current one too.
      const previous = 1 - current;
      this.#clear(previous);
      if (generations >= 2) this.#clear(current);
      current = previous;
      i32[CURRENT] = current;
      f64[F_ROTATED_AT] = rotatedAt + generations * 2 * this.#skewMs;
    }
    const stored = id + 1;
    const home = hashSlot(id) & this.#mask;
    if (this.#find(1 - current, stored, home)) return 1;
    const slot = this.#findOrEmpty(current, stored, home);
    if (slot < 0) return 1;
    if ((i32[COUNT0] ?? 0) + (i32[COUNT0 + 1] ?? 0) >= this.#maxEntries) return 2;
    const table = this.#tables[current as 0 | 1];
    table[slot] = stored;
    i32[COUNT0 + current] = (i32[COUNT0 + current] ?? 0) + 1;
    return 0;
  }

  #find(which: number, stored: number, home: number): boolean {
    const table = this.#tables[which as 0 | 1];
    for (let i = home; ; i = (i + 1) & this.#mask) {
      const v = table[i] ?? 0;
      if (v === 0) return false;
      if (v === stored) return true;
    }
  }

  /** The empty slot where `stored` goes, or -1 if it is there already. Never full: capacity >= 2 x maxEntries. */
  #findOrEmpty(which: number, stored: number, home: number): number {
    const table = this.#tables[which as 0 | 1];
    for (let i = home; ; i = (i + 1) & this.#mask) {
      const v = table[i] ?? 0;
      if (v === 0) return i;
      if (v === stored) return -1;
    }
  }

  #clear(which: number): void {
    if ((this.#i32[COUNT0 + which] ?? 0) === 0) return;
    const table = this.#tables[which as 0 | 1];
    // Write only what is set: writing zeros everywhere would make every page resident.
    for (let i = 0; i < table.length; i++) if (table[i] !== 0) table[i] = 0;
    this.#i32[COUNT0 + which] = 0;
  }

  #lock(): void {
    const i32 = this.#i32;
    for (let spins = 0; ; spins++) {
      const held = Atomics.compareExchange(i32, LOCK, 0, this.#owner);
      if (held === 0) return;
      // Brief spins first (the section is short), then sleep until notified (1 ms cap,
      // so a missed notify or a lock freed by releaseIfHeldBy() is seen soon).
      if (spins > 64) Atomics.wait(i32, LOCK, held, 1);
    }
  }

  #unlock(): void {
    Atomics.store(this.#i32, LOCK, 0);
    Atomics.notify(this.#i32, LOCK, 1);
  }
}

/** Spreads the 48-bit id over the slot bits (a key holder could otherwise pick colliding low bits). */
function hashSlot(id: number): number {
  const lo = id >>> 0;
  const hi = Math.floor(id / 0x1_0000_0000) >>> 0;
  const h = Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1);
  return (h ^ (h >>> 16)) >>> 0;
}
