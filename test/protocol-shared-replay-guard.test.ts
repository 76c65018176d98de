import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { ConfigError, HeaderReplayError, HeaderStaleError, ReplayCacheFullError } from '../src/errors.js';
import { ReplayGuard, type ReplayCheck } from '../src/protocol/replay-guard.js';
import { SharedReplayGuard } from '../src/protocol/shared-replay-guard.js';

const S = 1000; // skew, ms

type Make = (o: { maxClockSkewMs: number; maxEntries?: number; now: () => number }) => ReplayCheck & { readonly size: number };
const GUARDS: readonly [string, Make][] = [
  ['ReplayGuard', (o) => new ReplayGuard(o)],
  ['SharedReplayGuard', (o) => new SharedReplayGuard(o)],
  // A second view of the same buffer, as a worker has: every check goes through it.
  ['SharedReplayGuard (attached view)', (o) => SharedReplayGuard.attach(new SharedReplayGuard(o).buffer, o.now)],
];

function outcome(guard: ReplayCheck, at: number, nonce: Buffer): string {
  try {
    guard.check(at, nonce);
    return 'ok';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

for (const [name, make] of GUARDS) {
  void test(`${name}: a nonce is remembered for at least 2 x skew and forgotten after 4 x skew`, () => {
    for (const addAt of [0, 1, S, 2 * S - 1, 2 * S, 3 * S + 7, 10 * S - 1]) {
      for (let dt = 0; dt <= 6 * S; dt += S / 4) {
        for (const step of [0, S / 2, 1.9 * S, 3.9 * S]) {
          let now = 0;
          const guard = make({ maxClockSkewMs: S, now: () => now });
          const nonce = randomBytes(16);
          now = addAt;
          guard.check(now, nonce);
          if (step > 0) {
            for (let t = addAt + step; t < addAt + dt; t += step) {
              now = t;
              guard.check(now, randomBytes(16));
            }
          }
          now = addAt + dt;
          const kept = outcome(guard, now, nonce) === HeaderReplayError.code;
          const where = `added at ${addAt}, probed ${dt} ms later, traffic every ${step} ms`;
          if (dt < 2 * S) assert.equal(kept, true, where);
          if (dt >= 4 * S) assert.equal(kept, false, where);
        }
      }
    }
  });

  void test(`${name}: stale and future timestamps, 48-bit identity, fail closed when full`, () => {
    let now = 10 * S;
    const guard = make({ maxClockSkewMs: S, maxEntries: 3, now: () => now });
    assert.equal(outcome(guard, now - S - 1, randomBytes(16)), HeaderStaleError.code);
    assert.equal(outcome(guard, now + S + 1, randomBytes(16)), HeaderStaleError.code);
    assert.equal(outcome(guard, Number.NaN, randomBytes(16)), HeaderStaleError.code);
    const a = Buffer.alloc(16, 1);
    const b = Buffer.from(a);
    b[15] = 2;
    assert.equal(outcome(guard, now, a), 'ok');
    assert.equal(outcome(guard, now, b), HeaderReplayError.code, 'same first 48 bits: the same nonce');
    assert.equal(outcome(guard, now, Buffer.alloc(16, 0)), 'ok', 'the all-zero nonce is a nonce like any other');
    assert.equal(outcome(guard, now, Buffer.alloc(16, 0)), HeaderReplayError.code);
    assert.equal(outcome(guard, now, randomBytes(16)), 'ok');
    assert.equal(guard.size, 3);
    assert.equal(outcome(guard, now, randomBytes(16)), ReplayCacheFullError.code);
    assert.equal(outcome(guard, now, a), HeaderReplayError.code, 'a replay is still a replay when full');
    now += 4 * S;
    assert.equal(outcome(guard, now, randomBytes(16)), 'ok');
    assert.equal(guard.size, 1);
  });
}

void test('SharedReplayGuard: bad options are ConfigErrors, as for ReplayGuard', () => {
  assert.throws(() => new SharedReplayGuard({ maxClockSkewMs: 0 }), ConfigError);
  assert.throws(() => new SharedReplayGuard({ maxClockSkewMs: S, maxEntries: 0 }), ConfigError);
  assert.throws(() => new SharedReplayGuard({ maxClockSkewMs: S, maxEntries: 1.5 }), ConfigError);
});

void test('SharedReplayGuard: 100,000 nonces in, all refused the second time (the table does not lose any)', () => {
  const now = 50 * S;
  const guard = new SharedReplayGuard({ maxClockSkewMs: S, maxEntries: 100_000, now: () => now });
  const nonces = Array.from({ length: 100_000 }, () => randomBytes(16));
  let ok = 0;
  for (const n of nonces) if (outcome(guard, now, n) === 'ok') ok++;
  assert.equal(ok, 100_000);
  let replays = 0;
  for (const n of nonces) if (outcome(guard, now, n) === HeaderReplayError.code) replays++;
  assert.equal(replays, 100_000);
});

void test('SharedReplayGuard: a lock held by a dead thread is released for it', () => {
  const guard = new SharedReplayGuard({ maxClockSkewMs: S });
  const lock = new Int32Array(guard.buffer, 0, 1);
  Atomics.store(lock, 0, 42 + 1); // as if thread 42 died inside check()
  assert.equal(guard.releaseIfHeldBy(7), false, 'not held by 7');
  assert.equal(guard.releaseIfHeldBy(42), true);
  assert.equal(outcome(guard, Date.now(), randomBytes(16)), 'ok');
});

/**
 * Two worker threads check the same 20,000 nonces in the same order, meeting at a
 * barrier every 50: for each nonce exactly one of them may pass.
 */
void test('SharedReplayGuard: two worker threads racing the same 20,000 nonces: exactly one passes each', async (t) => {
  const guard = new SharedReplayGuard({ maxClockSkewMs: 30_000 });
  const count = 20_000;
  const nonces = randomBytes(16 * count);
  const barrier = new Int32Array(new SharedArrayBuffer(4));
  const moduleUrl = new URL('../src/protocol/shared-replay-guard.js', import.meta.url).href;
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    import(workerData.moduleUrl).then(({ SharedReplayGuard }) => {
      const guard = SharedReplayGuard.attach(workerData.buffer);
      const nonces = Buffer.from(workerData.nonces);
      const passed = [];
      for (let i = 0; i < workerData.count; i++) {
        // Every 50 nonces both threads meet, so they race over the same nonces all along
        // (left alone, one thread may do all 20,000 before the other is scheduled).
        if (i % 50 === 0) {
          const round = i / 50 + 1;
          Atomics.add(workerData.barrier, 0, 1);
          while (Atomics.load(workerData.barrier, 0) < 2 * round) { /* spin */ }
        }
        try { guard.check(Date.now(), nonces.subarray(i * 16, i * 16 + 16)); passed.push(i); }
        catch (err) { if (err.code !== 'TCPSPLIT_ERR_REPLAY') throw err; }
      }
      parentPort.postMessage(passed);
    });`;
  const run = async (): Promise<number[]> => {
    const w = new Worker(code, { eval: true, workerData: { moduleUrl, buffer: guard.buffer, nonces, barrier, count } });
    const [passed] = (await once(w, 'message')) as [number[]];
    await w.terminate();
    return passed;
  };
  const [a, b] = await Promise.all<[Promise<number[]>, Promise<number[]>]>([run(), run()]);
  t.diagnostic(`worker A passed ${a.length}, worker B passed ${b.length} of ${count}`);
  const both = new Set(a).size + new Set(b).size;
  assert.equal(both, count, 'one pass per nonce in all');
  const union = new Set([...a, ...b]);
  assert.equal(union.size, count, 'no nonce passed twice, none was lost');
  assert.equal(guard.size, count);
});
