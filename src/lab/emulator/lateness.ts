/**
 * Reading the emulator's lateness histogram: quantiles, a one-line summary for
 * failure messages, and the optional per-run record (TCPSPLIT_LAB_LATENESS_FILE)
 * from which a whole test run's lateness distribution is merged
 * (benchmarks/lab-lateness.ts).
 */
import { appendFileSync } from 'node:fs';
import { LATE_BUCKETS_MS, type DirectionCounters } from './counters.js';

/** Env var: when set, Lab.destroy() appends one JSON line per link direction to this file. */
export const LATENESS_FILE_ENV = 'TCPSPLIT_LAB_LATENESS_FILE';

/**
 * The q-quantile (0..1) of a lateness histogram, as the upper bound of the bucket it
 * falls in (so never an underestimate); for the open last bucket, `maxMs`. 0 when empty.
 */
export function lateQuantileMs(histogram: readonly number[], q: number, maxMs: number): number {
  const total = histogram.reduce((a, b) => a + b, 0);
  if (total === 0) return 0;
  const rank = Math.ceil(q * total);
  let seen = 0;
  for (let i = 0; i < histogram.length; i++) {
    seen += histogram[i] ?? 0;
    if (seen >= rank && seen > 0) return Math.min(LATE_BUCKETS_MS[i] ?? maxMs, maxMs);
  }
  return maxMs;
}

/** Bucket labels matching DirectionCounters.lateHistogram. */
export function lateBucketLabels(): string[] {
  const us = (ms: number): string => (ms < 1 ? `${String(ms * 1000)}us` : `${String(ms)}ms`);
  const last = LATE_BUCKETS_MS[LATE_BUCKETS_MS.length - 1] ?? 0;
  return [...LATE_BUCKETS_MS.map((b) => `<=${us(b)}`), `>${us(last)}`];
}

/** E.g. "n=412 mean 0.021 p50<=0.025 p99<=0.25 max 0.61 ms [<=10us 3, <=25us 380, ...]". */
export function formatLateness(c: DirectionCounters): string {
  const labels = lateBucketLabels();
  const nonEmpty = c.lateHistogram.map((n, i) => [labels[i] ?? '?', n] as const).filter(([, n]) => n > 0);
  return `n=${String(c.txPackets)} mean ${c.lateMeanMs.toFixed(3)} p50<=${lateQuantileMs(c.lateHistogram, 0.5, c.lateMaxMs).toFixed(3)} ` +
    `p99<=${lateQuantileMs(c.lateHistogram, 0.99, c.lateMaxMs).toFixed(3)} max ${c.lateMaxMs.toFixed(3)} ms ` +
    `[${nonEmpty.map(([l, n]) => `${l} ${String(n)}`).join(', ')}]`;
}

export interface LatenessRecord {
  readonly at: string;
  readonly pid: number;
  readonly node: string;
  readonly prefix: string;
  readonly link: string;
  readonly dir: 'up' | 'down';
  readonly txPackets: number;
  readonly lateMeanMs: number;
  readonly lateMaxMs: number;
  readonly bucketsMs: readonly number[];
  readonly histogram: readonly number[];
}

/** Appends one JSON line per direction when LATENESS_FILE_ENV is set; a no-op otherwise. */
export function recordLateness(prefix: string, link: string, counters: { up: DirectionCounters; down: DirectionCounters }): void {
  const file = process.env[LATENESS_FILE_ENV];
  if (file === undefined || file === '') return;
  const lines = (['up', 'down'] as const).map((dir) => {
    const c = counters[dir];
    const rec: LatenessRecord = {
      at: new Date().toISOString(), pid: process.pid, node: process.version, prefix, link, dir,
      txPackets: c.txPackets, lateMeanMs: c.lateMeanMs, lateMaxMs: c.lateMaxMs, bucketsMs: LATE_BUCKETS_MS, histogram: c.lateHistogram,
    };
    return JSON.stringify(rec);
  });
  appendFileSync(file, lines.join('\n') + '\n');
}
