import type { PeerSpec } from '../config/relay-config.js';
import { PeerPool, type PeerPoolStats } from './peer-pool.js';
import type { PeerPoolOptions } from './pool-options.js';

/** One peer's pool settings (relay-config.ts poolOf()). */
export interface PeerTuning {
  readonly pool: boolean;
  readonly low: number;
  readonly high: number;
  readonly maxIdleMs: number;
}

/**
 * One worker's pools, one per configured peer. Nothing here is shared between workers:
 * each worker fills and takes from its own (the paper's per-core magazines, §3).
 */
export class PoolSet {
  readonly #pools = new Map<string, PeerPool>();

  /**
   * `own` gives a peer's own settings (--pool-peer): off means no pool for it (its legs
   * are dialled), and its watermarks and idle age replace those of `options`.
   */
  constructor(peers: readonly PeerSpec[], options: PeerPoolOptions, own: (peer: string) => PeerTuning | undefined = () => undefined) {
    for (const peer of peers) {
      const t = own(peer.name);
      if (t?.pool === false) continue;
      this.#pools.set(peer.name, new PeerPool(peer, t === undefined ? options : { ...options, lowWatermark: t.low, highWatermark: t.high, maxIdleMs: t.maxIdleMs }));
    }
  }

  get(peerName: string): PeerPool | undefined {
    return this.#pools.get(peerName);
  }

  /** New watermarks and idle age for every pool, in place (PeerPool.retune); `tuning` gives each peer's. */
  retune(tuning: (peer: string) => Pick<PeerPoolOptions, 'lowWatermark' | 'highWatermark' | 'maxIdleMs'>): void {
    for (const [name, pool] of this.#pools) pool.retune(tuning(name));
  }

  start(): void {
    for (const pool of this.#pools.values()) pool.start();
  }

  stats(): PeerPoolStats[] {
    return [...this.#pools.values()].map((p) => p.stats());
  }

  close(): void {
    for (const pool of this.#pools.values()) pool.close();
  }
}
