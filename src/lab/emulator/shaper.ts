/**
 * The per-direction link model, as pure arithmetic over time (no I/O), so it is unit
 * tested on its own and the worker only moves bytes.
 *
 * A packet arriving at `now` meets, in order:
 *  1. the rate cap: a token bucket (GCRA form) of depth `burstBytes` filling at `rate`.
 *     A packet that cannot leave at once waits in the queue; if the queue already holds
 *     `queueLimit` packets (or bytes) it is tail-dropped. It is then serialized, taking
 *     bytes * 8 / rate.
 *  2. random loss on the wire, independent per packet (the lost packet still used the
 *     rate, as on a real lossy wire).
 *  3. the one-way delay plus a uniform jitter in [-jitter, +jitter].
 * Delivery order is kept: a packet is never delivered before the one ahead of it
 * (a jittered due time is raised to its predecessor's), as on a single real path, so
 * jitter never shows up as reordering (which TCP would read as loss).
 */
import type { DirectionConfig } from '../link-config.js';

export const DROP_LOSS = -1;
export const DROP_QUEUE = -2;

export type Random = () => number;

/** A small seeded PRNG (mulberry32), for reproducible tests. */
export function seededRandom(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class DirectionShaper {
  readonly #delayMs: number;
  readonly #jitterMs: number;
  readonly #msPerByte: number;
  readonly #burstMs: number;
  readonly #limitPackets: number;
  readonly #limitBytes: number;
  readonly #lossRate: number;
  readonly #random: Random;
  /** Virtual finish time of the last accepted packet (the bucket's state). */
  #tatMs = -Infinity;
  #lastDueMs = -Infinity;
  // FIFO of packets waiting behind the rate cap: their send times and sizes.
  readonly #qSend: Float64Array;
  readonly #qBytes: Int32Array;
  #qHead = 0;
  #qCount = 0;
  #qBytesTotal = 0;

  constructor(config: DirectionConfig, random: Random = Math.random) {
    this.#delayMs = config.delayMs;
    this.#jitterMs = config.jitterMs;
    this.#msPerByte = config.rateBitsPerSec > 0 ? 8000 / config.rateBitsPerSec : 0;
    this.#burstMs = config.burstBytes * this.#msPerByte;
    const q = config.queueLimit;
    this.#limitPackets = q.unit === 'packets' ? q.value : Infinity;
    this.#limitBytes = q.unit === 'bytes' ? q.value : Infinity;
    this.#lossRate = config.lossRate;
    this.#random = random;
    const capacity = q.unit === 'packets' ? q.value : Math.min(Math.ceil(q.value / 20), 1 << 20);
    this.#qSend = new Float64Array(this.#msPerByte > 0 ? capacity : 0);
    this.#qBytes = new Int32Array(this.#qSend.length);
  }

  /**
   * The time (ms, same clock as `nowMs`) at which a `bytes`-long packet arriving at
   * `nowMs` is to be delivered, or DROP_LOSS / DROP_QUEUE.
   */
  admit(nowMs: number, bytes: number): number {
    let departMs = nowMs;
    if (this.#msPerByte > 0) {
      this.#expire(nowMs);
      const sendMs = Math.max(nowMs, this.#tatMs - this.#burstMs);
      if (sendMs > nowMs) {
        if (this.#qCount >= this.#limitPackets || this.#qBytesTotal + bytes > this.#limitBytes
          || this.#qCount === this.#qSend.length) {
          return DROP_QUEUE;
        }
        const tail = (this.#qHead + this.#qCount) % this.#qSend.length;
        this.#qSend[tail] = sendMs;
        this.#qBytes[tail] = bytes;
        this.#qCount++;
        this.#qBytesTotal += bytes;
      }
      const txMs = bytes * this.#msPerByte;
      this.#tatMs = Math.max(this.#tatMs, sendMs) + txMs;
      departMs = sendMs + txMs;
    }
    if (this.#lossRate > 0 && this.#random() < this.#lossRate) return DROP_LOSS;
    let due = departMs + this.#delayMs;
    if (this.#jitterMs > 0) due += (this.#random() * 2 - 1) * this.#jitterMs;
    if (due < this.#lastDueMs) due = this.#lastDueMs;
    this.#lastDueMs = due;
    return due;
  }

  /** Packets waiting behind the rate cap at `nowMs`. */
  queuedPackets(nowMs: number): number {
    this.#expire(nowMs);
    return this.#qCount;
  }

  queuedBytes(nowMs: number): number {
    this.#expire(nowMs);
    return this.#qBytesTotal;
  }

  #expire(nowMs: number): void {
    while (this.#qCount > 0 && (this.#qSend[this.#qHead] ?? 0) <= nowMs) {
      this.#qBytesTotal -= this.#qBytes[this.#qHead] ?? 0;
      this.#qHead = (this.#qHead + 1) % this.#qSend.length;
      this.#qCount--;
    }
  }
}
