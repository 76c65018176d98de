/**
 * The relay-wide count of open split connections, checked against --max-connections.
 * In one process the relay counts its own connections; with worker threads each worker
 * takes a slot here before it admits a connection, so the limit (and the open-files
 * budget behind it) holds for the relay as a whole, not per worker.
 *
 * It also numbers connections relay-wide, so that log lines and records of different
 * workers never share an id, and says what share of the per-relay caps it does not count
 * itself (the pending-header caps, src/relay/admission.ts) each worker may use.
 *
 * The open-files budget is the process's, shared by all workers: the supervisor sizes it
 * once every worker listens (src/relay/fd-budget.ts) and sets it here as a cap.
 *
 * Early legs (docs/early-syn.md) are counted here too, relay-wide. A leg opened at a
 * client's SYN holds one descriptor before any accept; with early SYN on, the open-files
 * budget keeps a share of its descriptors for them (src/relay/fd-budget.ts), so that
 * they never eat into the connections' two each:
 * - an accept takes a slot if fewer than `limit` connections are open (early legs do not
 *   count: a leg opened for a SYN never costs an accepted client its slot);
 * - an early leg is opened only while connections and early legs together are fewer
 *   than `limit` (none for a SYN whose accept would find the relay full), and early legs
 *   are fewer than their descriptor cap;
 * - a claim turns an early leg into a connection under the accept's rule.
 *
 * Layout: Int32 [0] connections, [1] the fd cap in connections (-1: none), [2] early legs,
 * [3] the early legs' fd cap (-1: none), [4 + 2k] worker k's connections, [5 + 2k] its
 * early legs; then a BigInt64 id counter. A worker that dies holds slots it will never
 * release: the supervisor calls forget(k), which takes its shares off the totals. (A
 * worker terminated between the two adds of a take leaks one slot until restart: the
 * price of not taking a lock on the accept path.)
 */
export interface ConnectionSlots {
  /** Takes a slot if fewer than `limit` are taken (and two descriptors are left). */
  tryTake(limit: number): boolean;
  release(): void;
  /** Reserves room for an early leg: connections and early legs together fewer than `limit`. */
  tryTakeEarly(limit: number): boolean;
  /** An early leg closed unclaimed (or its claim was refused). */
  releaseEarly(): void;
  /** An early leg becomes a connection, if a connection could be admitted now; false leaves it early. */
  tryClaimEarly(limit: number): boolean;
  /** Slots taken now, by every worker. */
  readonly taken: number;
  /** Early legs waiting for their accept, in every worker. */
  readonly early: number;
  /** The next connection id, unique across workers. */
  nextId(): number;
  /**
   * This worker's share (1 / workers) of the caps on connections waiting for their
   * header: a source's connections are steered by address and port, so they spread over
   * the workers, and each worker holding its share keeps the relay's total within the cap.
   */
  readonly pendingShare: number;
}

const TAKEN = 0;
const FD_CAP = 1;
const EARLY = 2;
const EARLY_CAP = 3;
const HEADER = 4;
/** A cap slot's value for "no cap". */
const NO_CAP = -1;

export class SharedConnectionSlots implements ConnectionSlots {
  readonly buffer: SharedArrayBuffer;
  readonly pendingShare: number;
  readonly #i32: Int32Array;
  readonly #ids: BigInt64Array;
  /** This view's own counters (-1: the supervisor's view, which has none). */
  readonly #own: number;

  /** `workers` slots of bookkeeping; `worker` is this view's owner (-1: the supervisor's view). */
  constructor(workers: number, worker = -1, buffer?: SharedArrayBuffer) {
    const counts = 8 * Math.ceil((4 * (HEADER + 2 * workers)) / 8);
    this.buffer = buffer ?? new SharedArrayBuffer(counts + 8);
    this.#i32 = new Int32Array(this.buffer, 0, HEADER + 2 * workers);
    this.#ids = new BigInt64Array(this.buffer, counts, 1);
    this.#own = worker < 0 ? -1 : HEADER + 2 * worker;
    this.pendingShare = 1 / workers;
    if (buffer === undefined) {
      Atomics.store(this.#i32, FD_CAP, NO_CAP);
      Atomics.store(this.#i32, EARLY_CAP, NO_CAP);
    }
  }

  static attach(buffer: SharedArrayBuffer, workers: number, worker: number): SharedConnectionSlots {
    return new SharedConnectionSlots(workers, worker, buffer);
  }

  nextId(): number {
    return Number(Atomics.add(this.#ids, 0, 1n)) + 1;
  }

  get taken(): number {
    return Atomics.load(this.#i32, TAKEN);
  }

  get early(): number {
    return Atomics.load(this.#i32, EARLY);
  }

  /** The most connections, and early legs, the open-files limit allows, for all workers together. */
  setFdCap(connections: number, earlyLegs = Infinity): void {
    // 0 is a cap (nothing more fits); only Infinity (no limit) is none.
    const cap = (n: number): number => (Number.isFinite(n) ? Math.max(0, Math.min(n, 0x7fffffff)) : NO_CAP);
    Atomics.store(this.#i32, FD_CAP, cap(connections));
    Atomics.store(this.#i32, EARLY_CAP, cap(earlyLegs));
  }

  tryTake(limit: number): boolean {
    const cap = Atomics.load(this.#i32, FD_CAP);
    if (!this.#increment(TAKEN, () => cap === NO_CAP ? limit : Math.min(limit, cap))) return false;
    if (this.#own >= 0) Atomics.add(this.#i32, this.#own, 1);
    return true;
  }

  release(): void {
    this.#add(TAKEN, -1);
  }

  tryTakeEarly(limit: number): boolean {
    const cap = Atomics.load(this.#i32, EARLY_CAP);
    // Below both the early legs' own cap and what the connections leave of `limit`.
    const ok = this.#increment(EARLY, () => Math.min(cap === NO_CAP ? limit : cap, limit - Atomics.load(this.#i32, TAKEN)));
    if (!ok) return false;
    if (this.#own >= 0) Atomics.add(this.#i32, this.#own + 1, 1);
    return true;
  }

  releaseEarly(): void {
    this.#add(EARLY, -1);
  }

  tryClaimEarly(limit: number): boolean {
    if (!this.tryTake(limit)) return false;
    this.#add(EARLY, -1);
    return true;
  }

  /** Worker `worker` is gone: its slots and early legs are free again. */
  forget(worker: number): void {
    const at = HEADER + 2 * worker;
    Atomics.sub(this.#i32, TAKEN, Atomics.exchange(this.#i32, at, 0));
    Atomics.sub(this.#i32, EARLY, Atomics.exchange(this.#i32, at + 1, 0));
  }

  /** Adds one to a total if it stays below `bound()` (read again on each try); false if it would not. */
  #increment(index: number, bound: () => number): boolean {
    for (;;) {
      const now = Atomics.load(this.#i32, index);
      if (now >= bound()) return false;
      if (Atomics.compareExchange(this.#i32, index, now, now + 1) === now) return true;
    }
  }

  /**
   * Adds `n` to a total and to this view's share of it. A release takes from the share
   * first: a worker terminated in between then leaves the total one too high (a slot
   * held until restart), never one too low (forget() would take the share off again).
   */
  #add(index: typeof TAKEN | typeof EARLY, n: number): void {
    const share = this.#own + (index === EARLY ? 1 : 0);
    if (n < 0 && this.#own >= 0) Atomics.add(this.#i32, share, n);
    Atomics.add(this.#i32, index, n);
    if (n > 0 && this.#own >= 0) Atomics.add(this.#i32, share, n);
  }
}
