/**
 * Warn lines that anyone on the network can trigger (a bad header, a refused
 * connection) go through here, so a flood of them cannot flood the log: at most
 * `burst` lines in full per interval, then one summary line at the end of the interval
 * with the count of lines left out, by code. Metrics still count every event; this
 * only bounds the log.
 */
import type { Logger } from './logger.js';

export interface RateLimitedLogOptions {
  /** Lines written in full per interval. */
  readonly burst: number;
  readonly intervalMs: number;
}

export const DEFAULT_LOG_RATE_LIMIT: RateLimitedLogOptions = { burst: 20, intervalMs: 10_000 };

export class RateLimitedLog {
  readonly #logger: Logger;
  readonly #burst: number;
  readonly #intervalMs: number;
  #windowStart = 0;
  #written = 0;
  #suppressed = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;

  constructor(logger: Logger, options: RateLimitedLogOptions = DEFAULT_LOG_RATE_LIMIT) {
    this.#logger = logger;
    this.#burst = options.burst;
    this.#intervalMs = options.intervalMs;
  }

  /** A warn line counted under `code`: written in full, or left for the summary. */
  warn(code: string, fields: object, msg: string): void {
    const now = Date.now();
    if (this.#timer === undefined && now - this.#windowStart >= this.#intervalMs) {
      this.#windowStart = now;
      this.#written = 0;
    }
    if (this.#written < this.#burst) {
      this.#written++;
      this.#logger.warn(fields, msg);
      return;
    }
    this.#suppressed.set(code, (this.#suppressed.get(code) ?? 0) + 1);
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => { this.flush(); }, Math.max(0, this.#windowStart + this.#intervalMs - now));
      this.#timer.unref();
    }
  }

  /** Writes the summary of what was left out (if anything) and starts a new interval. */
  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#suppressed.size === 0) return;
    const suppressed = Object.fromEntries(this.#suppressed);
    let total = 0;
    for (const n of this.#suppressed.values()) total += n;
    this.#suppressed = new Map();
    this.#windowStart = Date.now();
    this.#written = 0;
    this.#logger.warn({ event: 'log-suppressed', suppressed, total, intervalMs: this.#intervalMs },
      `${total} more such lines left out in the last ${this.#intervalMs / 1000} s (counted in the metrics), by code`);
  }
}
