import type { HeaderAuth } from '../protocol/header-auth.js';
import type { PoolOpener } from './opener.js';
import { ConfigError } from '../errors.js';

/** Tuning of one peer's pool (the defaults are KTCP's: 4 to 16 connections per next hop). */
export interface PoolTuning {
  /** The pool refills to at least this many ready connections. */
  readonly lowWatermark: number;
  /** Never more than this many ready and opening connections. */
  readonly highWatermark: number;
  /**
   * A ready connection older than this is closed, not handed out: below common idle
   * timeouts of cloud load balancers (60 s) and NATs (350 s).
   */
  readonly maxIdleMs: number;
  readonly connectTimeoutMs: number;
  /** First wait after a failed refill; doubles per consecutive failure, up to backoffMaxMs. */
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  /**
   * A connection that dies younger than this counts as a refill failure (a peer that resets
   * every new connection, e.g. a wrong key, would otherwise be redialled in a tight loop);
   * one that lives longer, or is taken, ends a run of failures.
   */
  readonly healthyAfterMs: number;
  /** TCP keepalive idle time on pooled connections; 0 turns keepalive off. */
  readonly keepaliveMs: number;
}

export const DEFAULT_POOL_TUNING: PoolTuning = Object.freeze({
  lowWatermark: 4,
  highWatermark: 16,
  maxIdleMs: 60_000,
  connectTimeoutMs: 10_000,
  backoffInitialMs: 250,
  backoffMaxMs: 30_000,
  healthyAfterMs: 1_000,
  keepaliveMs: 15_000,
});

export interface PeerPoolOptions extends PoolTuning {
  /** Signs the AUTH frame each pooled connection starts with. */
  readonly auth: HeaderAuth;
  /** Opens a connecting socket to the peer (net.connect, or the socket factory with Turbo-Start buffers). */
  readonly opener: PoolOpener;
  /** A monotonic clock in ms (tests may inject one). */
  readonly now?: () => number;
}

/** Throws ConfigError naming the first bad value. */
export function verifyPoolTuning(t: PoolTuning): PoolTuning {
  const int = (name: keyof PoolTuning, min: number): void => {
    const v = t[name];
    if (!Number.isInteger(v) || v < min) throw new ConfigError(`pool ${name} must be an integer >= ${min}, not ${v}`);
  };
  int('lowWatermark', 0);
  int('highWatermark', 1);
  int('maxIdleMs', 1);
  int('connectTimeoutMs', 1);
  int('backoffInitialMs', 1);
  int('backoffMaxMs', 1);
  int('healthyAfterMs', 0);
  int('keepaliveMs', 0);
  if (t.lowWatermark > t.highWatermark) {
    throw new ConfigError(`pool lowWatermark (${t.lowWatermark}) must not exceed highWatermark (${t.highWatermark})`);
  }
  if (t.backoffInitialMs > t.backoffMaxMs) {
    throw new ConfigError(`pool backoffInitialMs (${t.backoffInitialMs}) must not exceed backoffMaxMs (${t.backoffMaxMs})`);
  }
  return t;
}
