/**
 * Longest-prefix match over IPv4 and IPv6 prefixes.
 *
 * One hash map per distinct prefix length, probed from the longest length down: a
 * lookup costs one map probe per length in use (a handful in practice), whatever the
 * number of routes. That is simpler than a trie and as fast at per-connection rates.
 */
import { Cidr, prefixMask } from './cidr.js';
import { parseIp, type IpAddress, type IpFamily } from './ip-address.js';

export interface RouteMatch<T> {
  readonly cidr: Cidr;
  readonly value: T;
}

interface Level<T> {
  readonly prefixLength: number;
  readonly mask: bigint;
  readonly entries: Map<bigint, RouteMatch<T>>;
}

export class RouteTable<T> {
  // Sorted by prefix length, longest first.
  readonly #levels: Record<IpFamily, Level<T>[]> = { 4: [], 6: [] };
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** Adds or replaces the value for `cidr`; returns the value it replaced. */
  add(cidr: Cidr | string, value: T): T | undefined {
    const prefix = typeof cidr === 'string' ? Cidr.parse(cidr) : cidr;
    const entries = this.#level(prefix, true).entries;
    const previous = entries.get(prefix.network);
    entries.set(prefix.network, { cidr: prefix, value });
    if (previous === undefined) this.#size++;
    return previous?.value;
  }

  /** The value stored for exactly this prefix, not a longest match. */
  get(cidr: Cidr | string): T | undefined {
    const prefix = typeof cidr === 'string' ? Cidr.parse(cidr) : cidr;
    return this.#level(prefix, false)?.entries.get(prefix.network)?.value;
  }

  /** The longest prefix containing `ip`, or undefined (also for a non-IP string). */
  match(ip: IpAddress | string): RouteMatch<T> | undefined {
    const addr = typeof ip === 'string' ? parseIp(ip) : ip;
    if (addr === undefined) return undefined;
    for (const level of this.#levels[addr.family]) {
      const hit = level.entries.get(addr.value & level.mask);
      if (hit !== undefined) return hit;
    }
    return undefined;
  }

  lookup(ip: IpAddress | string): T | undefined {
    return this.match(ip)?.value;
  }

  *entries(): IterableIterator<RouteMatch<T>> {
    for (const family of [4, 6] as const) {
      for (const level of this.#levels[family]) yield* level.entries.values();
    }
  }

  #level(prefix: Cidr, create: true): Level<T>;
  #level(prefix: Cidr, create: false): Level<T> | undefined;
  #level(prefix: Cidr, create: boolean): Level<T> | undefined {
    const levels = this.#levels[prefix.family];
    let i = 0;
    while (i < levels.length && (levels[i]?.prefixLength ?? -1) > prefix.prefixLength) i++;
    const found = levels[i];
    if (found?.prefixLength === prefix.prefixLength) return found;
    if (!create) return undefined;
    const level: Level<T> = {
      prefixLength: prefix.prefixLength,
      mask: prefixMask(prefix.family, prefix.prefixLength),
      entries: new Map(),
    };
    levels.splice(i, 0, level);
    return level;
  }
}
