/**
 * Admission of peer connections on --accept while they wait for their header.
 *
 * A real R_C writes its whole header in its first write, the moment its leg connects,
 * so a genuine peer connection is pending for about one round trip (one RTO more if
 * that segment is lost); --header-timeout bounds it. Until the header verifies, the
 * connection proves nothing, so pending connections are capped twice:
 *
 * - per source (an IPv4 address, or an IPv6 /64): a source at its cap makes room by
 *   dropping its own oldest pending connection, so one host flooding the port can hold
 *   only its own few slots;
 * - globally (a quarter of the connection limit): when full, the oldest pending
 *   connection anywhere is dropped, never the newcomer. A flood can then push out a
 *   genuine peer only by opening more connections than the whole quota within the one
 *   round trip that peer's header takes to arrive.
 *
 * A connection leaves the pending set as soon as its header verifies: authenticated
 * connections (and the pool's authenticated idle connections) are never evicted here;
 * --max-connections and --idle-timeout govern them.
 */
import { parseIp } from '../net/ip-address.js';

export type EvictionReason = 'source' | 'global';

export interface PendingLimits {
  readonly maxPending: number;
  readonly maxPendingPerSource: number;
}

interface Entry<T> {
  readonly item: T;
  readonly source: string;
}

export class PendingAdmission<T> {
  /** Insertion order is age order: the first entry is the oldest. */
  readonly #all = new Map<T, Entry<T>>();
  readonly #bySource = new Map<string, Set<T>>();
  readonly #evict: (item: T, reason: EvictionReason) => void;

  /** `evict` must reset the item's connection; the item has already left the set. */
  constructor(evict: (item: T, reason: EvictionReason) => void) {
    this.#evict = evict;
  }

  get size(): number {
    return this.#all.size;
  }

  /** Makes room under `limits` (evicting the oldest), then adds `item` as pending from `address`. */
  admit(item: T, address: string | undefined, limits: PendingLimits): void {
    const source = sourceKey(address);
    const mine = this.#bySource.get(source);
    if (mine !== undefined && mine.size >= limits.maxPendingPerSource) {
      const [oldest] = mine;
      if (oldest !== undefined) this.#drop(oldest, 'source');
    }
    while (this.#all.size >= Math.max(1, limits.maxPending)) {
      const [oldest] = this.#all.keys();
      if (oldest === undefined) break;
      this.#drop(oldest, 'global');
    }
    this.#all.set(item, { item, source });
    let set = this.#bySource.get(source);
    if (set === undefined) this.#bySource.set(source, (set = new Set()));
    set.add(item);
  }

  /** The item's header verified, or its connection closed: it is no longer pending. */
  release(item: T): boolean {
    const entry = this.#all.get(item);
    if (entry === undefined) return false;
    this.#all.delete(item);
    const set = this.#bySource.get(entry.source);
    set?.delete(item);
    if (set?.size === 0) this.#bySource.delete(entry.source);
    return true;
  }

  has(item: T): boolean {
    return this.#all.has(item);
  }

  #drop(item: T, reason: EvictionReason): void {
    if (this.release(item)) this.#evict(item, reason);
  }
}

/** Pending connections are counted per IPv4 address and per IPv6 /64 (what one host is given). */
export function sourceKey(address: string | undefined): string {
  const ip = address === undefined ? undefined : parseIp(address);
  if (ip === undefined) return address ?? '?';
  return ip.family === 4 ? `4:${ip.value}` : `6:${ip.value >> 64n}`;
}
