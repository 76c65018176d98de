/**
 * Live counters of one link direction, in a SharedArrayBuffer the emulator thread
 * writes and anyone in the process reads (no messages, no locks: each slot is one
 * aligned float64, and readers want a snapshot, not a transaction).
 */

export const COUNTER_NAMES = [
  'rxPackets', 'rxBytes', 'txPackets', 'txBytes',
  'dropLoss', 'dropQueue', 'dropBuffer', 'dropWrite', 'dropOversize',
  'queuedPackets', 'inFlightPackets',
  'lateSumMs', 'lateMaxMs', 'loopAtMs',
] as const;

/**
 * Upper bounds (ms) of the lateness histogram buckets; one more, open bucket follows.
 * Fine enough to read a p50 in the tens of microseconds and a p99 in milliseconds.
 */
export const LATE_BUCKETS_MS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50] as const;
/** The histogram's slots follow the named counters. */
export const LATE_HIST_START = COUNTER_NAMES.length;
const SLOTS = COUNTER_NAMES.length + LATE_BUCKETS_MS.length + 1;

export type CounterName = (typeof COUNTER_NAMES)[number];

/** Index of each counter in the Float64Array. */
export const C = Object.fromEntries(COUNTER_NAMES.map((n, i) => [n, i])) as Readonly<Record<CounterName, number>>;

export interface DirectionCounters {
  readonly rxPackets: number;
  readonly rxBytes: number;
  /** Delivered (written to the far end). */
  readonly txPackets: number;
  readonly txBytes: number;
  /** oversize: a packet longer than the emulator's slots (the lab's MTU is 1500). */
  readonly drops: { readonly loss: number; readonly queue: number; readonly buffer: number; readonly write: number; readonly oversize: number };
  /** Now waiting behind the rate cap / now in the delay line (including those queued). */
  readonly queuedPackets: number;
  readonly inFlightPackets: number;
  /** How late packets were written versus their due time: mean and max, in ms. */
  readonly lateMeanMs: number;
  readonly lateMaxMs: number;
  /** Packets by lateness: bucket i holds those <= LATE_BUCKETS_MS[i] (and above the one before); the last, the rest. */
  readonly lateHistogram: readonly number[];
}

export function createCounterBuffer(): Float64Array {
  return new Float64Array(new SharedArrayBuffer(SLOTS * Float64Array.BYTES_PER_ELEMENT));
}

export function readCounters(c: Float64Array): DirectionCounters {
  const v = (name: CounterName): number => c[C[name]] ?? 0;
  const tx = v('txPackets');
  return {
    rxPackets: v('rxPackets'), rxBytes: v('rxBytes'), txPackets: tx, txBytes: v('txBytes'),
    drops: { loss: v('dropLoss'), queue: v('dropQueue'), buffer: v('dropBuffer'), write: v('dropWrite'), oversize: v('dropOversize') },
    queuedPackets: v('queuedPackets'), inFlightPackets: v('inFlightPackets'),
    lateMeanMs: tx > 0 ? v('lateSumMs') / tx : 0, lateMaxMs: v('lateMaxMs'),
    lateHistogram: Array.from({ length: LATE_BUCKETS_MS.length + 1 }, (_, i) => c[LATE_HIST_START + i] ?? 0),
  };
}
