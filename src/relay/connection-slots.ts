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
 * Layout: Int32 [0] total, [1] the fd cap (0: none), [2 + k] worker k's share; then a BigInt64 id counter. A worker that dies holds slots it
 * will never release: the supervisor calls forget(k), which takes its share off the
 * total. (A worker terminated between the two adds of take() leaks one slot until
 * restart: the price of not taking a lock on the accept path.)
 */
export interface ConnectionSlots {
  /** Takes a slot if fewer than `limit` are taken. */
  tryTake(limit: number): boolean;
  release(): void;
  /** Slots taken now, by every worker. */
  readonly taken: number;
  /** The next connection id, unique across workers. */
  nextId(): number;
  /**
   * This worker's share (1 / workers) of the caps on connections waiting for their
   * header: a source's connections are steered by address and port, so they spread over
   * the workers, and each worker holding its share keeps the relay's total within the cap.
   */
  readonly pendingShare: number;
}

export class SharedConnectionSlots implements ConnectionSlots {
  readonly buffer: SharedArrayBuffer;
  readonly pendingShare: number;
  readonly #i32: Int32Array;
  readonly #ids: BigInt64Array;
  readonly #share: number;

  /** `workers` slots of bookkeeping; `worker` is this view's owner (-1: the supervisor's view). */
  constructor(workers: number, worker = -1, buffer?: SharedArrayBuffer) {
    const counts = 8 * Math.ceil((4 * (2 + workers)) / 8);
    this.buffer = buffer ?? new SharedArrayBuffer(counts + 8);
    this.#i32 = new Int32Array(this.buffer, 0, 2 + workers);
    this.#ids = new BigInt64Array(this.buffer, counts, 1);
    this.#share = worker + 2;
    this.pendingShare = 1 / workers;
  }

  static attach(buffer: SharedArrayBuffer, workers: number, worker: number): SharedConnectionSlots {
    return new SharedConnectionSlots(workers, worker, buffer);
  }

  nextId(): number {
    return Number(Atomics.add(this.#ids, 0, 1n)) + 1;
  }

  get taken(): number {
    return Atomics.load(this.#i32, 0);
  }

  /** The most connections the open-files limit allows, for all workers together. */
  setFdCap(connections: number): void {
    Atomics.store(this.#i32, 1, Number.isFinite(connections) ? Math.min(connections, 0x7fffffff) : 0);
  }

  tryTake(requested: number): boolean {
    const cap = Atomics.load(this.#i32, 1);
    const limit = cap > 0 ? Math.min(requested, cap) : requested;
    for (;;) {
      const now = Atomics.load(this.#i32, 0);
      if (now >= limit) return false;
      if (Atomics.compareExchange(this.#i32, 0, now, now + 1) === now) break;
    }
    if (this.#share > 1) Atomics.add(this.#i32, this.#share, 1);
    return true;
  }

  release(): void {
    Atomics.sub(this.#i32, 0, 1);
    if (this.#share > 1) Atomics.sub(this.#i32, this.#share, 1);
  }

  /** Worker `worker` is gone: its slots are free again. */
  forget(worker: number): void {
    const held = Atomics.exchange(this.#i32, worker + 2, 0);
    Atomics.sub(this.#i32, 0, held);
  }
}
