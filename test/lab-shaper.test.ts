import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_DIRECTION, type DirectionConfig } from '../src/lab/link-config.js';
import { DROP_LOSS, DROP_QUEUE, DirectionShaper, seededRandom } from '../src/lab/emulator/shaper.js';

function shaper(over: Partial<DirectionConfig>, seed = 1): DirectionShaper {
  return new DirectionShaper({ ...DEFAULT_DIRECTION, ...over }, seededRandom(seed));
}

void test('shaper: delay only: due = arrival + delay, nothing queued', () => {
  const s = shaper({ delayMs: 10 });
  assert.equal(s.admit(0, 1500), 10);
  assert.equal(s.admit(0.5, 1500), 10.5);
  assert.equal(s.queuedPackets(0.5), 0);
});

void test('shaper: rate: back-to-back packets leave one serialization time apart', () => {
  // 12 Mbit/s: a 1500-byte packet takes 1 ms.
  const s = shaper({ delayMs: 5, rateBitsPerSec: 12e6 });
  const dues = [0, 1, 2, 3].map(() => s.admit(0, 1500));
  assert.deepEqual(dues.map((d) => Math.round(d * 1e6) / 1e6), [6, 7, 8, 9]);
  assert.equal(s.queuedPackets(0), 3, 'the first is on the wire, three wait');
  assert.equal(s.queuedBytes(1.5), 3000, 'the third and fourth still wait at 1.5 ms');
  assert.equal(s.queuedPackets(2.5), 1);
  assert.equal(s.queuedPackets(3), 0);
});

void test('shaper: long-run rate equals the cap', () => {
  const s = shaper({ rateBitsPerSec: 50e6, queueLimit: { unit: 'packets', value: 1_000_000 } });
  let last = 0;
  for (let i = 0; i < 10_000; i++) last = s.admit(i * 0.01, 1500); // offered 1.2 Gbit/s
  const bits = 10_000 * 1500 * 8;
  assert.ok(Math.abs(bits / (last / 1000) - 50e6) < 1, 'delivered at exactly 50 Mbit/s');
});

void test('shaper: tail drop at the packet limit, then room again as the queue drains', () => {
  const s = shaper({ rateBitsPerSec: 12e6, queueLimit: { unit: 'packets', value: 2 } });
  // The first goes on the wire at once, the next two wait (send at 1 and 2 ms), the fourth is dropped.
  const v = [0, 0, 0, 0].map(() => s.admit(0, 1500));
  assert.deepEqual(v.map((d) => Math.round(d * 1e6) / 1e6), [1, 2, 3, DROP_QUEUE]);
  assert.equal(s.admit(0.99, 1500), DROP_QUEUE);
  assert.equal(Math.round(s.admit(1.01, 1500) * 1e6) / 1e6, 4, 'a place freed at 1 ms');
});

void test('shaper: byte limit counts bytes', () => {
  const s = shaper({ rateBitsPerSec: 12e6, queueLimit: { unit: 'bytes', value: 3000 } });
  assert.ok(s.admit(0, 1500) > 0);
  assert.ok(s.admit(0, 1500) > 0);
  assert.ok(s.admit(0, 1500) > 0);
  assert.equal(s.admit(0, 100), DROP_QUEUE, '3000 bytes already wait');
});

void test('shaper: burst lets a bucket-full leave at once', () => {
  const s = shaper({ rateBitsPerSec: 12e6, burstBytes: 4500 });
  const dues = [0, 1, 2, 3, 4].map(() => s.admit(0, 1500));
  assert.deepEqual(dues.slice(0, 4).map((d) => Math.round(d * 1e6) / 1e6), [1, 1, 1, 1]);
  assert.ok((dues[4] ?? 0) > 1.5);
});

void test('shaper: random loss within a binomial bound, reproducible by seed', () => {
  const n = 100_000;
  const p = 0.1;
  let lost = 0;
  const s = shaper({ lossRate: p }, 42);
  for (let i = 0; i < n; i++) if (s.admit(i, 100) === DROP_LOSS) lost++;
  const sd = Math.sqrt(n * p * (1 - p));
  assert.ok(Math.abs(lost - n * p) < 5 * sd, `lost ${lost} of ${n}`);
  let again = 0;
  const s2 = shaper({ lossRate: p }, 42);
  for (let i = 0; i < n; i++) if (s2.admit(i, 100) === DROP_LOSS) again++;
  assert.equal(again, lost);
});

void test('shaper: jitter spreads delay within +-jitter and never reorders', () => {
  const s = shaper({ delayMs: 20, jitterMs: 5 }, 7);
  let prev = -Infinity;
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < 10_000; i++) {
    const now = i * 10; // sparse: 10 ms apart, so ordering rarely binds
    const due = s.admit(now, 100);
    assert.ok(due >= prev, 'FIFO');
    prev = due;
    min = Math.min(min, due - now);
    max = Math.max(max, due - now);
  }
  assert.ok(min >= 15 && min < 15.1, `min ${min}`);
  assert.ok(max <= 25 && max > 24.9, `max ${max}`);
});
