import type { PeerSpec } from '../config/relay-config.js';
import { PeerPool, type PeerPoolStats } from './peer-pool.js';
import type { PeerPoolOptions } from './pool-options.js';

/**
 * One worker's pools, one per configured peer. Nothing here is shared between workers:
 * each worker fills and takes from its own (the paper's per-core magazines, §3).
 */
export class PoolSet {
  readonly #pools = new Map<string, PeerPool>();

  constructor(peers: readonly PeerSpec[], options: PeerPoolOptions) {
    for (const peer of peers) this.#pools.set(peer.name, new PeerPool(peer, options));
  }

  get(peerName: string): PeerPool | undefined {
    return this.#pools.get(peerName);
  }

  /** New watermarks and idle age for every pool, in place (PeerPool.retune). */
  retune(t: Pick<PeerPoolOptions, 'lowWatermark' | 'highWatermark' | 'maxIdleMs'>): void {
    for (const pool of this.#pools.values()) pool.retune(t);
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
