/**
 * retryIfStarved (test/helpers/lab.ts), on a stand-in for a lab's counters and for the
 * CPU's steal: a timing measurement that fails while the emulator was late beyond the
 * cap is taken again; one that fails on time fails at once; the last attempt's failure
 * fails, unless the hypervisor starved it (inconclusive: a skip that says why).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LINK_NAMES } from '../src/lab/address-plan.js';
import { LATE_BUCKETS_MS, type DirectionCounters } from '../src/lab/emulator/counters.js';
import { InconclusiveMeasurement, inconclusiveAsSkip, labTimingTest, retryIfStarved, type StealSource } from './helpers/lab.js';

/** Counters whose lateness histogram the test moves: `late(ms, n)` adds n packets that late. */
function fakeLab(): { lab: { linkCounters(): { up: DirectionCounters; down: DirectionCounters } }; late(ms: number, n: number): void } {
  const hist = new Array<number>(LATE_BUCKETS_MS.length + 1).fill(0);
  let max = 0;
  const dir = (): DirectionCounters => ({
    rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0,
    drops: { loss: 0, queue: 0, buffer: 0, write: 0, oversize: 0 },
    queuedPackets: 0, inFlightPackets: 0, lateMeanMs: 0, lateMaxMs: max, lateHistogram: [...hist],
  });
  return {
    lab: { linkCounters: () => ({ up: dir(), down: dir() }) },
    late(ms, n) {
      let b = 0;
      while (b < LATE_BUCKETS_MS.length && ms > (LATE_BUCKETS_MS[b] ?? 0)) b++;
      hist[b] = (hist[b] ?? 0) + n;
      max = Math.max(max, ms);
    },
  };
}

const t0 = { diagnostic: (): void => undefined };
const links = [LINK_NAMES[0]];
/** A steal share the test sets (the real one is read from /proc/stat). */
function fakeSteal(share: () => number): StealSource {
  return { mark: () => ({ total: 0, steal: 0 }), share };
}
/** No pauses between attempts here (the lab's are 3, 10, 20, 40 and 50 s), no steal, early in the file. */
const NO_PAUSE = { pausesMs: [0, 0, 0, 0, 0], steal: fakeSteal(() => 0), uptimeMs: () => 1000 };

void test('lab timing: a measurement that failed while the emulator was starved is taken again, and the retry can pass', async () => {
  const f = fakeLab();
  let attempts = 0;
  const got = await retryIfStarved(t0, f.lab, links, () => {
    attempts++;
    if (attempts === 1) {
      f.late(10, 100); // this attempt's packets were 10 ms late
      assert.fail('too slow');
    }
    f.late(0.02, 100); // on time: the earlier attempt's lateness does not count against this one
    return Promise.resolve('ok');
  }, NO_PAUSE);
  assert.equal(got, 'ok');
  assert.equal(attempts, 2);
});

void test('lab timing: a measurement that failed with the emulator on time fails at once (a real regression is not retried away)', async () => {
  const f = fakeLab();
  let attempts = 0;
  await assert.rejects(retryIfStarved(t0, f.lab, links, () => {
    attempts++;
    f.late(0.02, 100);
    assert.fail('2 ms slow');
  }, NO_PAUSE), (e: Error) => /2 ms slow/.test(e.message) && /attempt 1 of 6/.test(e.message));
  assert.equal(attempts, 1);
});

void test('lab timing: starved every time, the sixth failure fails the test; errors that are not assertions are never retried', async () => {
  const f = fakeLab();
  let attempts = 0;
  await assert.rejects(retryIfStarved(t0, f.lab, links, () => {
    attempts++;
    f.late(20, 100);
    assert.fail('too slow');
  }, NO_PAUSE), (e: Error) => /attempt 6 of 6: emulator lateness p99 20\.000 ms/.test(e.message));
  assert.equal(attempts, 6);
  let crashes = 0;
  await assert.rejects(retryIfStarved(t0, f.lab, links, () => {
    crashes++;
    f.late(20, 100);
    throw new Error('curl exited 7');
  }, NO_PAUSE), /curl exited 7/);
  assert.equal(crashes, 1);
});

void test('lab timing: starved every time, the last attempt by the hypervisor (steal): inconclusive, and the test is skipped with the reason', async () => {
  const f = fakeLab();
  let attempts = 0;
  const steal = fakeSteal(() => (attempts === 6 ? 0.4 : 0));
  await assert.rejects(retryIfStarved(t0, f.lab, links, () => {
    attempts++;
    f.late(20, 100);
    assert.fail('too slow');
  }, { ...NO_PAUSE, steal }), (e: Error) => e instanceof InconclusiveMeasurement && /all 6 attempts/.test(e.message) && /steal 40\.0%/.test(e.message) && /too slow/.test(e.message));
  // Under inconclusiveAsSkip the test is skipped with that reason; other errors still fail it.
  const skips: string[] = [];
  const t = { skip: (m?: string): void => { skips.push(m ?? ''); } };
  await inconclusiveAsSkip(() => Promise.reject(new InconclusiveMeasurement('starved')))(t);
  assert.deepEqual(skips, ['inconclusive: starved']);
  await assert.rejects(inconclusiveAsSkip(() => Promise.reject(new assert.AssertionError({ message: 'slow' })))(t), /slow/);
  assert.equal(skips.length, 1);
  // Steal on an attempt that passes, or that failed on time, changes nothing.
  await assert.rejects(retryIfStarved(t0, f.lab, links, () => {
    f.late(0.02, 1000);
    assert.fail('2 ms slow');
  }, { ...NO_PAUSE, steal: fakeSteal(() => 0) }), (e: Error) => !(e instanceof InconclusiveMeasurement));
});

void test('lab timing: no retry starts past the file deadline; the starved failure is then final (a fail without steal, inconclusive with it)', async () => {
  const f = fakeLab();
  let attempts = 0;
  const late = { ...NO_PAUSE, uptimeMs: () => 239_000, deadlineMs: 240_000 };
  await assert.rejects(retryIfStarved(t0, f.lab, links, () => {
    attempts++;
    f.late(20, 100);
    assert.fail('too slow');
  }, { ...late, pausesMs: [3000] }), (e: Error) => !(e instanceof InconclusiveMeasurement) && /attempt 1 of 6 \(no time left for another: 239 s into the file\)/.test(e.message));
  assert.equal(attempts, 1);
  await assert.rejects(retryIfStarved(t0, f.lab, links, () => {
    attempts++;
    f.late(20, 100);
    assert.fail('too slow');
  }, { ...late, pausesMs: [3000], steal: fakeSteal(() => 0.25) }), InconclusiveMeasurement);
  assert.equal(attempts, 2);
});

void test('lab timing: retryIfStarved refuses a test not declared with labTimingTest, whose inconclusive result would fail it instead of skipping', async (t) => {
  const f = fakeLab();
  await assert.rejects(retryIfStarved(t, f.lab, links, () => Promise.resolve(1), NO_PAUSE), /not declared with labTimingTest/);
});

void labTimingTest('lab timing: a test declared with labTimingTest may retry (root only, as every lab timing test)', {}, async (t) => {
  const f = fakeLab();
  let attempts = 0;
  assert.equal(await retryIfStarved(t, f.lab, links, () => {
    if (++attempts === 1) { f.late(20, 100); assert.fail('too slow'); }
    return Promise.resolve(7);
  }, NO_PAUSE), 7);
  assert.equal(attempts, 2);
});
