/**
 * The pairing table of one worker (the paper's per-core QP tree): an early leg, opened
 * when the client's SYN was captured, waits here by 4-tuple until accept() claims it.
 *
 *   SYN event   -> offer(syn, open)   opens a leg (calls `open`) only if admitted
 *   accept()    -> claim(tuple)       the leg, or undefined: connect after accept, as today
 *
 * Rules, and why:
 * - **Bounded in time.** An entry lives `timeoutMs` (default 3 s; KTCP's 90 s is far too
 *   long under a SYN flood). A claim never matches an older entry; a sweep drops it and
 *   hands its leg to `onDrop` (reason 'expired'), which closes it.
 * - **Bounded in size.** At most `maxEntries` pending per worker and `maxPerSource` per
 *   client address. Beyond either: no early leg ('full' / 'source-cap'), counted; the
 *   connection falls back. Early SYN opens an outgoing connection for a client that has
 *   not proved its address, so these caps bound the amplification: at most maxEntries
 *   outgoing handshakes per worker per timeoutMs, whatever the SYN rate.
 * - **Retransmitted SYN.** The same 4-tuple with the same ISN while its entry is live is
 *   a retransmission: no-op, counted ('retransmit').
 * - **Reused 4-tuple.** The same 4-tuple with a different ISN is a new connection
 *   attempt (a retransmission repeats the ISN; a new attempt gets a new one). The old
 *   entry's handshake can no longer complete (the kernel's SYN_RECV state for the tuple
 *   follows the newest SYN), so its leg is dropped ('superseded') and a fresh one opened.
 *   A stale leg is therefore never claimed: a claim matches only the entry of the
 *   latest SYN seen for the tuple, younger than the timeout, not yet claimed (a claim
 *   removes it).
 * - **Late events.** The capture thread gives the SYN its verdict before posting the
 *   event, so on a fast path accept() can run first. A claim (hit or miss) leaves a
 *   tombstone with the claim time and the claimed ISN; an offer for that tuple whose SYN
 *   was captured before the claim, or that repeats the claimed ISN, belongs to the
 *   connection already accepted and opens nothing ('late'). A genuinely new connection on
 *   the tuple has a SYN captured after the claim and a new ISN, and is admitted.
 *
 * **The accepted socket's ISN.** A listener with TCP_SAVE_SYN (src/sys/saved-syn.ts)
 * keeps each connection's SYN, so accept() can read the ISN of the very SYN that made
 * the socket. claim(tuple, isn) then hands out a leg only if it was opened for that ISN;
 * an entry of another SYN on the tuple (an earlier attempt whose newer SYN the capture
 * missed: queue overflow under fail-open, a worker restarting) is dropped ('mismatch'),
 * counted, and the connection falls back. Without the ISN (no saved SYN: a listener
 * without the option, or a connection completed by a SYN cookie, which keeps no SYN)
 * the claim relies on the 4-tuple and on the table holding only the latest SYN per tuple.
 *
 * Time is CLOCK_MONOTONIC in milliseconds (monotonicMs(), the clock SynEvent.t uses),
 * injectable for tests. Pure TypeScript: no sockets, no kernel calls.
 */
import { canonicalAddress, fourTupleKey, sourceKey, type FourTuple } from '../net/four-tuple.js';
import { monotonicMs } from './clock.js';

/** A captured SYN, as the capture thread reports it (SynEvent fits). */
export interface SynOffer extends FourTuple {
  /** The SYN's sequence number: the client's ISN. */
  readonly isn: number;
  /** When the SYN was captured, on the table's clock. */
  readonly t: number;
}

export type OfferOutcome = 'opened' | 'retransmit' | 'late' | 'full' | 'source-cap' | 'open-failed';
export type DropReason = 'expired' | 'superseded' | 'mismatch' | 'closed';

export interface Claimed<L> {
  readonly leg: L;
  readonly isn: number;
  /** When its SYN was captured. */
  readonly synAt: number;
  /** How long it waited in the table. */
  readonly waitedMs: number;
}

export interface PairingTableOptions<L> {
  /** Closes a leg that will never be claimed. Called once per dropped leg; must not throw. */
  readonly onDrop: (leg: L, reason: DropReason, tuple: FourTuple) => void;
  /** How long an entry waits for its accept (default 3000 ms). */
  readonly timeoutMs?: number;
  /** Entries pending per worker (default 1024). */
  readonly maxEntries?: number;
  /** Entries pending per client address (default 32). */
  readonly maxPerSource?: number;
  /** The clock (default: CLOCK_MONOTONIC in ms). */
  readonly now?: () => number;
  /** Sweep period while entries wait; 0: no timer (call sweep() yourself). Default min(250, timeoutMs / 4). */
  readonly sweepIntervalMs?: number;
}

export const PAIRING_DEFAULTS = { timeoutMs: 3000, maxEntries: 1024, maxPerSource: 32 } as const;

export interface PairingCounters {
  offered: number;
  opened: number;
  retransmits: number;
  late: number;
  full: number;
  sourceCapped: number;
  openFailed: number;
  superseded: number;
  expired: number;
  claimed: number;
  missed: number;
  /** Claims whose accepted socket's ISN was not the entry's: the entry was dropped. */
  isnMismatch: number;
}

interface Entry<L> {
  readonly tuple: FourTuple;
  readonly source: string;
  readonly isn: number;
  readonly synAt: number;
  /** When it was inserted: expiry counts from here (insertion order is time order). */
  readonly at: number;
  readonly leg: L;
}

interface Tombstone {
  readonly at: number;
  readonly isn: number | undefined;
}

function positiveInt(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`PairingTable: ${name} must be a positive integer, got ${value}`);
  return value;
}

export class PairingTable<L> {
  readonly timeoutMs: number;
  readonly maxEntries: number;
  readonly maxPerSource: number;
  readonly counters: PairingCounters = {
    offered: 0, opened: 0, retransmits: 0, late: 0, full: 0, sourceCapped: 0, openFailed: 0,
    superseded: 0, expired: 0, claimed: 0, missed: 0, isnMismatch: 0,
  };
  readonly #entries = new Map<string, Entry<L>>();
  readonly #perSource = new Map<string, number>();
  readonly #tombstones = new Map<string, Tombstone>();
  readonly #onDrop: PairingTableOptions<L>['onDrop'];
  readonly #now: () => number;
  readonly #sweepIntervalMs: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: PairingTableOptions<L>) {
    this.timeoutMs = positiveInt('timeoutMs', options.timeoutMs ?? PAIRING_DEFAULTS.timeoutMs);
    this.maxEntries = positiveInt('maxEntries', options.maxEntries ?? PAIRING_DEFAULTS.maxEntries);
    this.maxPerSource = positiveInt('maxPerSource', options.maxPerSource ?? PAIRING_DEFAULTS.maxPerSource);
    this.#onDrop = options.onDrop;
    this.#now = options.now ?? monotonicMs;
    this.#sweepIntervalMs = options.sweepIntervalMs ?? Math.min(250, Math.max(1, Math.floor(this.timeoutMs / 4)));
  }

  /** Entries waiting for their accept. */
  get size(): number {
    return this.#entries.size;
  }

  /** Entries waiting from `address`. */
  pendingFrom(address: string): number {
    return this.#perSource.get(canonicalAddress(address)) ?? 0;
  }

  /**
   * A SYN was captured: opens its early leg with `open()` if the rules admit it (see the
   * file comment), and says what happened. `open` is not called for any other outcome.
   */
  offer(syn: SynOffer, open: () => L): OfferOutcome {
    this.counters.offered++;
    const now = this.#now();
    const key = fourTupleKey(syn);
    const tomb = this.#tombstones.get(key);
    if (tomb !== undefined) {
      if (now - tomb.at >= this.timeoutMs) {
        this.#tombstones.delete(key);
      } else if (syn.t <= tomb.at || syn.isn === tomb.isn) {
        this.counters.late++;
        return 'late';
      }
    }
    const existing = this.#entries.get(key);
    if (existing !== undefined) {
      if (now - existing.at >= this.timeoutMs) {
        this.#drop(key, existing, 'expired');
      } else if (existing.isn === syn.isn) {
        this.counters.retransmits++;
        return 'retransmit';
      } else {
        this.#drop(key, existing, 'superseded');
      }
    }
    if (this.#entries.size >= this.maxEntries) {
      this.sweep();
      if (this.#entries.size >= this.maxEntries) {
        this.counters.full++;
        return 'full';
      }
    }
    const source = sourceKey(syn);
    const fromSource = this.#perSource.get(source) ?? 0;
    if (fromSource >= this.maxPerSource) {
      this.counters.sourceCapped++;
      return 'source-cap';
    }
    let leg: L;
    try {
      leg = open();
    } catch {
      this.counters.openFailed++;
      return 'open-failed';
    }
    const tuple: FourTuple = { saddr: syn.saddr, sport: syn.sport, daddr: syn.daddr, dport: syn.dport };
    this.#entries.set(key, { tuple, source, isn: syn.isn, synAt: syn.t, at: now, leg });
    this.#perSource.set(source, fromSource + 1);
    this.counters.opened++;
    this.#arm();
    return 'opened';
  }

  /**
   * accept() returned a socket for `tuple`: its early leg, or undefined (no SYN was
   * captured for it, it was not admitted, it expired, or it was opened for another SYN),
   * in which case the caller connects after accept. `isn`, when known (the saved SYN's
   * sequence number), must be the entry's. Either way the tuple is tombstoned against
   * late offers.
   */
  claim(tuple: FourTuple, isn?: number): Claimed<L> | undefined {
    const now = this.#now();
    const key = fourTupleKey(tuple);
    let entry = this.#entries.get(key);
    if (entry !== undefined && now - entry.at >= this.timeoutMs) {
      this.#drop(key, entry, 'expired');
      entry = undefined;
    }
    if (entry !== undefined && isn !== undefined && entry.isn !== isn) {
      this.counters.isnMismatch++;
      this.#drop(key, entry, 'mismatch');
      entry = undefined;
    }
    this.#tombstone(key, { at: now, isn: isn ?? entry?.isn });
    if (entry === undefined) {
      this.counters.missed++;
      return undefined;
    }
    this.#remove(key, entry);
    this.counters.claimed++;
    return { leg: entry.leg, isn: entry.isn, synAt: entry.synAt, waitedMs: now - entry.at };
  }

  /** Drops expired entries (closing their legs) and old tombstones. The timer calls it; tests may too. */
  sweep(): void {
    const now = this.#now();
    for (const [key, entry] of this.#entries) {
      if (now - entry.at < this.timeoutMs) break; // insertion order is time order
      this.#drop(key, entry, 'expired');
    }
    for (const [key, tomb] of this.#tombstones) {
      if (now - tomb.at < this.timeoutMs) break;
      this.#tombstones.delete(key);
    }
    if (this.#entries.size === 0 && this.#tombstones.size === 0) this.#disarm();
  }

  /** Drops every entry (reason 'closed') and stops the timer; the table stays usable. */
  close(): void {
    for (const [key, entry] of this.#entries) this.#drop(key, entry, 'closed');
    this.#tombstones.clear();
    this.#disarm();
  }

  #tombstone(key: string, tomb: Tombstone): void {
    this.#tombstones.delete(key); // re-insert at the end: insertion order stays time order
    if (this.#tombstones.size >= this.maxEntries) {
      const oldest = this.#tombstones.keys().next();
      if (oldest.done !== true) this.#tombstones.delete(oldest.value);
    }
    this.#tombstones.set(key, tomb);
    this.#arm();
  }

  #remove(key: string, entry: Entry<L>): void {
    this.#entries.delete(key);
    const n = (this.#perSource.get(entry.source) ?? 1) - 1;
    if (n <= 0) this.#perSource.delete(entry.source);
    else this.#perSource.set(entry.source, n);
  }

  #drop(key: string, entry: Entry<L>, reason: DropReason): void {
    this.#remove(key, entry);
    if (reason === 'expired') this.counters.expired++;
    else if (reason === 'superseded') this.counters.superseded++;
    this.#onDrop(entry.leg, reason, entry.tuple);
  }

  #arm(): void {
    if (this.#timer !== undefined || this.#sweepIntervalMs === 0) return;
    this.#timer = setInterval(() => { this.sweep(); }, this.#sweepIntervalMs);
    this.#timer.unref();
  }

  #disarm(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
