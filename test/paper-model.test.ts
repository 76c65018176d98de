import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CONFIGURATIONS, configuration, type ConfigName } from '../src/paper/configurations.js';
import { idealTtfbMs, predict, slowStartRounds, timeline, transferAfterFirstByteMs, type PathRtts } from '../src/paper/model.js';

const close = (got: number, want: number, what: string): void => {
  assert.ok(Math.abs(got - want) < 1e-9, `${what}: model ${String(got)} ms, by hand ${String(want)} ms`);
};

const ttfb = (r: PathRtts, name: ConfigName): number => timeline(r, configuration(name).path).ttfbMs;

// Hand-computed first bytes (ms). Derivations in docs/model.md; each line's sum written out.
const CASES: readonly { what: string; rtts: PathRtts; want: Readonly<Record<ConfigName, number>> }[] = [
  {
    // The paper's §4: r2 >> r1 > r3.
    what: 'paper (32.7, 215, 26; internet 273.7)',
    rtts: { r1Ms: 32.7, r2Ms: 215, r3Ms: 26, riMs: 273.7 },
    want: {
      'e2e': 2 * 273.7,
      'nosplit': 2 * 273.7,
      'ssh': 2 * (32.7 + 215 + 26),
      'split': 2 * (32.7 + 215 + 26),
      // R_C's SYN at r1/2, its leg up at r1/2 + r2, the request at R_S r2/2 later; R_S's leg
      // (started at r1/2 + r2/2) is up long before: r1/2 + 1.5 r2 + r3 + r2/2 + r1/2.
      'split+es': 32.7 + 2 * 215 + 26,
      // Request at R_C at 1.5 r1, at R_S r2/2 later; R_S's leg up at r1/2 + r2/2 + r3, earlier.
      'split+es+cp': 1.5 * 32.7 + 215 / 2 + 26 + 215 / 2 + 32.7 / 2,
      'full': 1.5 * 32.7 + 215 / 2 + 26 + 215 / 2 + 32.7 / 2,
    },
  },
  {
    // A server leg longer than the client leg, and longer than the long haul.
    what: 'server leg longest (10, 40, 60; internet 100)',
    rtts: { r1Ms: 10, r2Ms: 40, r3Ms: 60, riMs: 100 },
    want: {
      'e2e': 200, 'nosplit': 220, 'ssh': 220, 'split': 220,
      // R_S starts at r1/2 + r2/2 = 25, its leg is up at 85 > request at R_S (5 + 40 + 20 = 65):
      // 85 + r3/2 (30) + back (55) = 170 = r1 + r2 + 2 r3.
      'split+es': 170,
      // Target at R_S at 25, leg up at 85; request at R_S at 15 + 20 = 35: 85 + 30 + 55 = 170 = R + r3.
      'split+es+cp': 170, 'full': 170,
    },
  },
  {
    // A client leg longer than the long haul: the request, not the handshakes, is late.
    what: 'client leg longest (50, 20, 5; internet 70)',
    rtts: { r1Ms: 50, r2Ms: 20, r3Ms: 5, riMs: 70 },
    want: {
      'e2e': 140, 'nosplit': 150, 'ssh': 150, 'split': 150,
      // Request at R_C at 75 > R_C's leg up (25 + 20); at R_S at 85, R_S's leg up at 40:
      // 85 + 2.5 + 37.5 = 125 = 2 r1 + r2 + r3.
      'split+es': 125,
      'split+es+cp': 125, 'full': 125,
    },
  },
  {
    // r3 > r1 with the long haul dominant: early SYN saves r1 + r3, the pool r2 - r3 (not r2 - r1).
    what: 'r3 > r1, r2 dominant (20, 200, 40; internet 250)',
    rtts: { r1Ms: 20, r2Ms: 200, r3Ms: 40, riMs: 250 },
    want: {
      'e2e': 500, 'nosplit': 520, 'ssh': 520, 'split': 520,
      'split+es': 520 - 20 - 40,
      // R + max(r1, r3) = 260 + 40.
      'split+es+cp': 300, 'full': 300,
    },
  },
];

for (const c of CASES) {
  void test(`model: first byte of every configuration by hand, ${c.what}`, () => {
    for (const conf of CONFIGURATIONS) close(ttfb(c.rtts, conf.name), c.want[conf.name], `${c.what} ${conf.name}`);
  });
}

void test('model: the paper\'s claims hold for its own RTTs: early SYN saves r1 + r3, the pool r2 - r1, Turbo-Start nothing at the first byte', () => {
  const r = CASES[0]?.rtts;
  assert.ok(r);
  close(ttfb(r, 'split') - ttfb(r, 'split+es'), r.r1Ms + r.r3Ms, 'early SYN');
  close(ttfb(r, 'split+es') - ttfb(r, 'split+es+cp'), r.r2Ms - r.r1Ms, 'pool');
  close(ttfb(r, 'split+es+cp') - ttfb(r, 'full'), 0, 'Turbo-Start');
  close(idealTtfbMs(r), 273.7, 'ideal');
});

void test('model: with the pool, the first byte is R + max(r1, r3) whenever the long haul is longest', () => {
  for (const [r1, r2, r3] of [[5, 100, 1], [1, 100, 5], [30, 31, 29], [3.27, 21.5, 2.6]] as const) {
    const r = { r1Ms: r1, r2Ms: r2, r3Ms: r3, riMs: r1 + r2 + r3 };
    close(ttfb(r, 'split+es+cp'), r1 + r2 + r3 + Math.max(r1, r3), `pool ${String([r1, r2, r3])}`);
  }
});

void test('model: a timeline is ordered, starts with the client\'s SYN and ends with its first byte', () => {
  const tl = timeline({ r1Ms: 10, r2Ms: 40, r3Ms: 60, riMs: 100 }, configuration('ssh').path);
  assert.deepEqual(tl.events[0], { atMs: 0, host: 'client', what: 'SYN' });
  assert.equal(tl.events.at(-1)?.what, 'first byte');
  for (let i = 1; i < tl.events.length; i++) assert.ok((tl.events[i]?.atMs ?? 0) >= (tl.events[i - 1]?.atMs ?? 0));
  assert.equal(tl.connectMs, 10);
});

void test('model: R_S cannot learn the target from a SYN that a pooled leg never sends', () => {
  assert.throws(() => timeline({ r1Ms: 1, r2Ms: 1, r3Ms: 1, riMs: 1 },
    { kind: 'split', rcLeg: 'pooled', rcTarget: 'at-syn', rsTarget: 'syn', dataWaitsForRs: false, turboRcRs: false }), RangeError);
  assert.throws(() => timeline({ r1Ms: -1, r2Ms: 1, r3Ms: 1, riMs: 1 }, { kind: 'direct', via: 'path' }), RangeError);
});

void test('model: slow-start rounds from an initial window of 10 (1448-byte segments)', () => {
  const table = [[1, 1], [10, 1], [11, 2], [30, 2], [31, 3], [70, 3], [71, 4], [725, 7], [7243, 10]] as const;
  for (const [segments, rounds] of table) assert.equal(slowStartRounds(segments, 10), rounds, `${String(segments)} segments`);
  assert.equal(slowStartRounds(0, 10), 0);
});

void test('model: download time adds the slowest leg\'s slow-start rounds; 10 KB fits in the first window; Turbo-Start starts rc-rs at 100 segments', () => {
  const r = { r1Ms: 32.7, r2Ms: 215, r3Ms: 26, riMs: 273.7 };
  const kb10 = predict(r, configuration('split+es+cp').path, 10 * 1024);
  close(kb10.totalMs, kb10.ttfbMs, '10 KB: one window');
  // 1 MiB + 240 B = 725 segments: 7 rounds, 6 RTTs after the first byte.
  close(predict(r, configuration('e2e').path, 1 << 20).totalMs, 2 * 273.7 + 6 * 273.7, 'e2e 1 MB');
  close(predict(r, configuration('split').path, 1 << 20).totalMs, 2 * 273.7 + 6 * 215, 'split 1 MB: rc-rs sets the pace');
  const full = predict(r, configuration('full').path, 1 << 20);
  // Turbo-Start's 100 segments: 100 + 200 + 400 = 700 < 725, so 4 rounds on rc-rs, 3 r2 after the first byte.
  close(full.totalMs, full.ttfbMs + 3 * 215, 'full 1 MB: rc-rs, from 100 segments, still sets the pace');
  const full100k = predict(r, configuration('full').path, 100 * 1024);
  close(full100k.totalMs, full100k.ttfbMs + 3 * 32.7, 'full 100 KB: one rc-rs round; client-rc (10 segments) sets the pace');
  // A rate cap adds the serialisation: 1 MB at 8 Mbit/s = 1048.816 ms ... on the slowest leg.
  const capped = transferAfterFirstByteMs(1e6 - 240, [{ rttMs: 0, rateBitsPerSec: 8e6, slowStart: false }]);
  close(capped, 1000, '1 MB at 8 Mbit/s');
});

void test('model: ssh forwards whole channel packets (32 KB): a 10 KB response fits in one rc-rs round, from 100 KB on the first byte waits one more r2', () => {
  const r = { r1Ms: 32.7, r2Ms: 215, r3Ms: 26, riMs: 273.7 };
  const ssh = configuration('ssh').path;
  close(predict(r, ssh, 10 * 1024).ttfbMs, 2 * 273.7, 'ssh 10 KB');
  close(predict(r, ssh, 100 * 1024).ttfbMs, 2 * 273.7 + 215, 'ssh 100 KB');
  close(predict(r, ssh, 10 << 20).ttfbMs, 2 * 273.7 + 215, 'ssh 10 MB');
  close(predict(r, configuration('split').path, 10 << 20).ttfbMs, 2 * 273.7, 'split forwards bytes as they come');
});

void test('model: closed forms for any RTTs: split and ssh 2R, early SYN R + max(r1, r2, r3), with the pool R + max(r1, r3)', () => {
  fc.assert(fc.property(
    fc.double({ min: 0, max: 1000, noNaN: true }), fc.double({ min: 0, max: 1000, noNaN: true }), fc.double({ min: 0, max: 1000, noNaN: true }),
    (r1, r2, r3) => {
      const r = { r1Ms: r1, r2Ms: r2, r3Ms: r3, riMs: 0 };
      const R = r1 + r2 + r3;
      const near = (a: number, b: number): boolean => Math.abs(a - b) <= 1e-9 * Math.max(1, R);
      return near(ttfb(r, 'split'), 2 * R) && near(ttfb(r, 'ssh'), 2 * R) && near(ttfb(r, 'nosplit'), 2 * R) &&
        near(ttfb(r, 'split+es'), R + Math.max(r1, r2, r3)) && near(ttfb(r, 'split+es+cp'), R + Math.max(r1, r3)) &&
        near(ttfb(r, 'full'), ttfb(r, 'split+es+cp'));
    }));
});

void test('model: early SYN at R_C only, with the target in the header (R_S learns it from the first bytes): R + max(r1, r2 + r3)', () => {
  for (const [r1, r2, r3] of [[32.7, 215, 26], [10, 40, 60], [50, 20, 5]] as const) {
    const tl = timeline({ r1Ms: r1, r2Ms: r2, r3Ms: r3, riMs: 0 },
      { kind: 'split', rcLeg: 'at-syn', rcTarget: 'at-syn', rsTarget: 'first-bytes', dataWaitsForRs: false, turboRcRs: false });
    close(tl.ttfbMs, r1 + r2 + r3 + Math.max(r1, r2 + r3), `header-borne ${String([r1, r2, r3])}`);
  }
});

void test('model: ssh\'s held first packet is counted once in the download time', () => {
  const r = { r1Ms: 32.7, r2Ms: 215, r3Ms: 26, riMs: 273.7 };
  // 100 KB + 240 B = 72 segments: 4 rounds on rc-rs, the first of which is also the held packet's.
  close(predict(r, configuration('ssh').path, 100 * 1024).totalMs, 2 * 273.7 + 3 * 215, 'ssh 100 KB');
  close(predict(r, configuration('ssh').path, 10 * 1024).totalMs, 2 * 273.7, 'ssh 10 KB');
});
