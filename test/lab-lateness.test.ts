import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LATE_BUCKETS_MS } from '../src/lab/emulator/counters.js';
import { lateBucketLabels, lateQuantileMs } from '../src/lab/emulator/lateness.js';
import { MonotonicClock } from '../src/sys/index.js';

const hist = (counts: Record<number, number>): number[] => Array.from({ length: LATE_BUCKETS_MS.length + 1 }, (_, i) => counts[i] ?? 0);

void test('lateness: quantiles are the upper bound of the bucket they fall in, capped by the max', () => {
  // 98 packets <= 25 us, 1 <= 1 ms, 1 in the open bucket (> 50 ms), max 70 ms.
  const h = hist({ 1: 98, 6: 1, [LATE_BUCKETS_MS.length]: 1 });
  assert.equal(lateQuantileMs(h, 0.5, 70), 0.025);
  assert.equal(lateQuantileMs(h, 0.98, 70), 0.025);
  assert.equal(lateQuantileMs(h, 0.99, 70), 1);
  assert.equal(lateQuantileMs(h, 1, 70), 70, 'the open bucket reads as the max');
  assert.equal(lateQuantileMs(hist({ 3: 5 }), 0.99, 0.07), 0.07, 'never above the max seen');
  assert.equal(lateQuantileMs(hist({}), 0.5, 0), 0);
});

void test('lateness: one label per histogram slot', () => {
  const labels = lateBucketLabels();
  assert.equal(labels.length, LATE_BUCKETS_MS.length + 1);
  assert.equal(labels[0], '<=10us');
  assert.equal(labels.at(-1), '>50ms');
});

void test('emulator clock: CLOCK_MONOTONIC in ms, never going back, advancing across a sleep', async () => {
  const clock = new MonotonicClock();
  clock.sample();
  const a = clock.ms[0] ?? NaN;
  const b = clock.nowMs();
  assert.ok(Number.isFinite(a) && a > 0);
  assert.ok(b >= a);
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(clock.nowMs() - b >= 19, 'a 20 ms timer cannot fire before 20 ms have passed (1 ms for rounding)');
});
