import { ConfigError, HeaderReplayError, HeaderStaleError, ReplayCacheFullError } from '../errors.js';

/**
 * What the header decoder needs of a replay guard: ReplayGuard here (one thread), or
 * SharedReplayGuard (shared-replay-guard.ts) across the workers of one relay.
 */
export interface ReplayCheck {
  /** Throws HeaderStaleError, HeaderReplayError or ReplayCacheFullError; otherwise records the nonce. */
  check(timestampMs: number, nonce: Buffer): void;
}

export interface ReplayGuardOptions {
  /** A header's timestamp may differ from this clock by at most this much. */
  readonly maxClockSkewMs: number;
  /** Fail closed beyond this many remembered nonces (bounded memory). */
  readonly maxEntries?: number;
  readonly now?: () => number;
}

/**
 * Rejects headers whose timestamp is outside the skew window and nonces seen before.
 *
 * A nonce must be remembered for as long as its header could still pass the timestamp
 * check: at most 2 × skew after it arrives. Two generations rotated every 2 × skew keep
 * each nonce for between 2 and 4 × skew, with no per-entry timers. Generations start on
 * a fixed 2 × skew grid, not at the check that happens to rotate them: otherwise a quiet
 * spell would stretch a generation and a nonce could stay up to 6 × skew.
 * Nonces are kept as their first 48 bits (a JS number), ~20 bytes an entry: a false
 * "replay" needs a 2^-48 collision among live entries (< 4e-9 per header at 1M entries).
 */
export class ReplayGuard implements ReplayCheck {
  readonly #skewMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  #current = new Set<number>();
  #previous = new Set<number>();
  #rotatedAt: number;

  constructor(options: ReplayGuardOptions) {
    // A zero window would rotate on every check and forget every nonce at once.
    if (!(options.maxClockSkewMs > 0)) throw new ConfigError(`maxClockSkewMs must be > 0, not ${options.maxClockSkewMs}`);
    if (options.maxEntries !== undefined && !(options.maxEntries >= 1)) {
      throw new ConfigError(`maxEntries must be >= 1, not ${options.maxEntries}`);
    }
    this.#skewMs = options.maxClockSkewMs;
    this.#maxEntries = options.maxEntries ?? 1_000_000;
    this.#now = options.now ?? Date.now;
    this.#rotatedAt = this.#now();
  }

  get size(): number {
    return this.#current.size + this.#previous.size;
  }

  /** Throws HeaderStaleError, HeaderReplayError or ReplayCacheFullError; otherwise records the nonce. */
  check(timestampMs: number, nonce: Buffer): void {
    const now = this.#now();
    const skew = Math.abs(now - timestampMs);
    if (!(skew <= this.#skewMs)) {
      throw new HeaderStaleError(`header timestamp is ${Math.round(skew)} ms from this relay's clock (limit ${this.#skewMs} ms)`);
    }
    const generations = Math.floor((now - this.#rotatedAt) / (2 * this.#skewMs));
    if (generations >= 1) {
      this.#previous = generations >= 2 ? new Set() : this.#current;
      this.#current = new Set();
      this.#rotatedAt += generations * 2 * this.#skewMs;
    }
    const id = nonce.readUIntBE(0, 6);
    if (this.#current.has(id) || this.#previous.has(id)) {
      throw new HeaderReplayError('header nonce was seen before (replayed header)');
    }
    if (this.size >= this.#maxEntries) {
      throw new ReplayCacheFullError(`replay cache holds ${this.#maxEntries} nonces; refusing new headers until it rotates`);
    }
    this.#current.add(id);
  }
}
