/**
 * Early SYN in the emulated WAN (issue 8 §3, tests): the first byte through two relays
 * with and without early SYN, against the RTT arithmetic of src/paper/model.ts
 * (docs/model.md). RTTs scaled so that the test takes seconds: client-rc 10 ms, rc-rs
 * 60 ms, rs-server 8 ms.
 *
 * - Transparent chain (both relays intercept; R_C dials the original destination and R_S
 *   catches that SYN too): early SYN saves r1 + r3.
 * - Forward listener (-L) on R_C with a peer R_S (--accept, no pool): R_S learns the
 *   target from the header, so only R_C's overlap is gained: r1.
 * - -L with the pool (+ES+CP): the pooled leg is taken and the TARGET frame sent at the
 *   SYN, so R_S's connect to the server overlaps the client's handshake: min(r1, r3)
 *   less than the pool alone.
 *
 * Upper bounds go on the fastest of several fetches with an allowance per emulated-link
 * traversal from the emulator's own lateness in this run (test/helpers/lab.ts); lower
 * bounds are exact: no configuration may beat its model.
 */
import { after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab, startNginx } from '../src/lab/index.js';
import { DEFAULT_DIRECTION, type LabProfile } from '../src/lab/link-config.js';
import { startLabRelays, startTransparentRelays } from '../src/demo/lab-relays.js';
import { curlArgs, parseCurlTiming } from '../src/demo/curl-timing.js';
import type { LinkName } from '../src/lab/address-plan.js';
import { timeline, type PathRtts, type SplitPath } from '../src/paper/model.js';
import { assertFloor, assertNoLabLeft, labTimingTest, retryIfStarved, samplesOf, traversalAllowanceMs, type LatenessMark, type Samples } from './helpers/lab.js';

const PREFIX = 'tes';
const PATH: readonly LinkName[] = ['client-rc', 'rc-rs', 'rs-server'];
const R1 = 10;
const R2 = 60;
const R3 = 8;
const RI = 80;
/** As in test/lab-relay.test.ts: nginx and curl for a first byte, and both relays' own work per connection. */
const FIRST_BYTE_HOST_MS = 2.5;
const RELAYS_MS = 7;
const FETCHES = 8;
const METRICS = '127.0.0.1:9109';

function symmetric(rttMs: number): LabProfile[LinkName] {
  const d = { ...DEFAULT_DIRECTION, delayMs: rttMs / 2 };
  return { up: d, down: d };
}

const PROFILE: LabProfile = { 'client-rc': symmetric(R1), 'rc-rs': symmetric(R2), 'rs-server': symmetric(R3), internet: symmetric(RI) };
const RTTS: PathRtts = { r1Ms: R1, r2Ms: R2, r3Ms: R3, riMs: RI };
const NAIVE: SplitPath = { kind: 'split', rcLeg: 'at-accept', rcTarget: 'at-accept', rsTarget: 'first-bytes', dataWaitsForRs: false, turboRcRs: false };
/** Both relays start their legs at the SYN (the paper's +ES). */
const TRANSPARENT_ES: SplitPath = { ...NAIVE, rcLeg: 'at-syn', rcTarget: 'at-syn', rsTarget: 'syn' };
/** -L: R_C at the SYN, R_S from the header. */
const FORWARD_ES: SplitPath = { ...NAIVE, rcLeg: 'at-syn', rcTarget: 'at-syn' };
/** -L with the pool (+CP): the pooled leg is up; the TARGET frame leaves at accept. */
const POOLED: SplitPath = { ...NAIVE, rcLeg: 'pooled' };
/** -L with the pool and early SYN (+ES+CP): the pooled leg is taken, and the TARGET frame sent, at the SYN. */
const POOLED_ES: SplitPath = { ...NAIVE, rcLeg: 'pooled', rcTarget: 'at-syn' };

/**
 * Emulated-link traversals on the critical path to the first byte: the naive split
 * crosses each link 4 times (2 round trips each); early SYN takes a round trip off r1
 * (both cases) and off r3 (transparent).
 */
const TRAVERSALS = new Map<SplitPath, number>([[NAIVE, 12], [TRANSPARENT_ES, 8], [FORWARD_ES, 10], [POOLED, 10], [POOLED_ES, 8]]);

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

void labTimingTest('lab (root, netns): early SYN lowers the first byte by r1 + r3 (transparent chain), by r1 (-L), and by min(r1, r3) with the pool (-L, +ES+CP), as the model says', { timeout: 240_000 }, async (t) => {
  const lab = await Lab.create({ prefix: PREFIX, profile: PROFILE });
  cleanups.push(async () => { await lab.destroy(); assertNoLabLeft(PREFIX); });
  const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-lab-es-'));
  cleanups.push(() => { rmSync(dir, { recursive: true, force: true }); });
  const web = await startNginx(lab, { files: { 'small.bin': 10_000 }, port: 80 });
  cleanups.push(() => web.stop());

  const fetches = async (url: string): Promise<Samples> => {
    const ttfb: number[] = [];
    for (let i = 0; i < FETCHES; i++) {
      const timing = parseCurlTiming(await lab.exec('client', 'curl', curlArgs(url, 30)), url);
      assert.equal(timing.httpCode, 200);
      ttfb.push(timing.ttfbMs);
    }
    return samplesOf(ttfb);
  };
  /** Floors checked against the model; returns the floor and its upper tolerance. */
  const check = (what: string, samples: Samples, path: SplitPath, since: LatenessMark): { floor: number; tolerance: number } => {
    const model = timeline(RTTS, path).ttfbMs;
    const traversals = TRAVERSALS.get(path) ?? 12;
    const tolerance = traversalAllowanceMs(lab, PATH, traversals, undefined, since) + FIRST_BYTE_HOST_MS + RELAYS_MS;
    t.diagnostic(`${what}: first byte ${samples.summary}; model ${model.toFixed(1)} ms, tolerance ${tolerance.toFixed(2)} ms`);
    const floor = assertFloor(lab, { what, samples, lowerMs: model, expectedMs: model, traversals, links: PATH, extraMs: FIRST_BYTE_HOST_MS + RELAYS_MS, since });
    return { floor, tolerance };
  };

  // Transparent chain, early SYN off, then on.
  const target = web.url('path', 'small.bin');
  const transparent: Record<'off' | 'on', { floor: number; tolerance: number }> = { off: { floor: 0, tolerance: 0 }, on: { floor: 0, tolerance: 0 } };
  for (const mode of ['off', 'on'] as const) {
    const relays = await startTransparentRelays(lab, dir, { rcArgs: ['--early-syn', mode], rsArgs: ['--early-syn', mode] });
    try {
      if (mode === 'on') {
        // Both relays must really run it (root in the lab): a warning here would make the test vacuous.
        await relays.rc.waitFor((l) => l['event'] === 'early-syn' && String(l.msg).startsWith('early SYN on'), 5000);
        await relays.rs.waitFor((l) => l['event'] === 'early-syn' && String(l.msg).startsWith('early SYN on'), 5000);
      }
      transparent[mode] = await retryIfStarved(t, lab, PATH, async (since) =>
        check(`transparent, early SYN ${mode}`, await fetches(target), mode === 'on' ? TRANSPARENT_ES : NAIVE, since));
    } finally {
      await relays.stop();
    }
  }
  const saved = transparent.off.floor - transparent.on.floor;
  t.diagnostic(`transparent: early SYN saved ${saved.toFixed(2)} ms (model r1 + r3 = ${R1 + R3} ms)`);
  assert.ok(saved >= R1 + R3 - transparent.on.tolerance && saved <= R1 + R3 + transparent.off.tolerance,
    `transparent chain: early SYN saved ${saved.toFixed(2)} ms, expected ${R1 + R3} ms within -${transparent.on.tolerance.toFixed(2)}/+${transparent.off.tolerance.toFixed(2)} ms`);

  // -L on R_C, peer R_S: only R_C's overlap.
  const forward: Record<'off' | 'on', { floor: number; tolerance: number }> = { off: { floor: 0, tolerance: 0 }, on: { floor: 0, tolerance: 0 } };
  for (const mode of ['off', 'on'] as const) {
    const relays = await startLabRelays(lab, dir, 80, { earlySyn: mode === 'on', rcArgs: ['--metrics', METRICS, '--pool', 'off'] }); // early SYN without the pool (the pool takes its leg at accept)
    try {
      if (mode === 'on') await relays.rc.waitFor((l) => l['event'] === 'early-syn' && String(l.msg).startsWith('early SYN on'), 5000);
      let fetched = 0;
      forward[mode] = await retryIfStarved(t, lab, PATH, async (since) => {
        const samples = await fetches(relays.url('small.bin'));
        fetched += FETCHES;
        if (mode === 'on') {
          const m = await lab.exec('rc', 'curl', ['-s', '--max-time', '5', `http://${METRICS}/metrics`]);
          const line = (name: string): string => m.stdout.split('\n').filter((l) => l.startsWith(name)).join(', ');
          t.diagnostic(`R_C: ${line('tcpsplit_early_syn_paired_total')}; ${line('tcpsplit_early_syn_offers_total')}; ${line('tcpsplit_early_syn_fallbacks_total')}; ${line('tcpsplit_early_syn_event_delay_seconds_sum')}`);
          assert.match(m.stdout, new RegExp(`^tcpsplit_early_syn_paired_total ${String(fetched)}$`, 'm'), 'every fetch took the leg opened at its SYN');
        }
        return check(`-L, early SYN ${mode}`, samples, mode === 'on' ? FORWARD_ES : NAIVE, since);
      });
    } finally {
      await relays.stop();
    }
  }
  const savedL = forward.off.floor - forward.on.floor;
  t.diagnostic(`-L: early SYN saved ${savedL.toFixed(2)} ms (model r1 = ${R1} ms)`);
  assert.ok(savedL >= R1 - forward.on.tolerance && savedL <= R1 + forward.off.tolerance,
    `-L: early SYN saved ${savedL.toFixed(2)} ms, expected ${R1} ms within -${forward.on.tolerance.toFixed(2)}/+${forward.off.tolerance.toFixed(2)} ms`);

  // -L with the pool: early SYN takes the pooled leg at the SYN and sends the target on it
  // at once, so R_S's leg to the server overlaps the client's handshake: min(r1, r3) less.
  const pooled: Record<'off' | 'on', { floor: number; tolerance: number }> = { off: { floor: 0, tolerance: 0 }, on: { floor: 0, tolerance: 0 } };
  for (const mode of ['off', 'on'] as const) {
    const relays = await startLabRelays(lab, dir, 80, { earlySyn: mode === 'on', rcArgs: ['--metrics', METRICS, '--pool', 'on', '--turbo', 'off'] });
    try {
      if (mode === 'on') await relays.rc.waitFor((l) => l['event'] === 'early-syn' && String(l.msg).startsWith('early SYN on'), 5000);
      const poolSize = async (): Promise<number> => {
        const m = await lab.exec('rc', 'curl', ['-s', '--max-time', '5', `http://${METRICS}/metrics`]);
        return Number(/^tcpsplit_pool_size\{peer="rs"\} (\d+)$/m.exec(m.stdout)?.[1] ?? 0);
      };
      for (let i = 0; i < 100 && await poolSize() === 0; i++) await sleep(50);
      let fetched = 0;
      pooled[mode] = await retryIfStarved(t, lab, PATH, async (since) => {
        const samples = await fetches(relays.url('small.bin'));
        fetched += FETCHES;
        const m = await lab.exec('rc', 'curl', ['-s', '--max-time', '5', `http://${METRICS}/metrics`]);
        assert.match(m.stdout, /^tcpsplit_pool_takes_total\{peer="rs"\} [1-9]/m, 'the pool was used');
        if (mode === 'on') assert.match(m.stdout, new RegExp(`^tcpsplit_early_syn_paired_total ${String(fetched)}$`, 'm'), 'every fetch took the leg taken at its SYN');
        return check(`-L with the pool, early SYN ${mode}`, samples, mode === 'on' ? POOLED_ES : POOLED, since);
      });
    } finally {
      await relays.stop();
    }
  }
  const savedP = pooled.off.floor - pooled.on.floor;
  const modelP = timeline(RTTS, POOLED).ttfbMs - timeline(RTTS, POOLED_ES).ttfbMs;
  t.diagnostic(`-L with the pool: early SYN saved ${savedP.toFixed(2)} ms (model min(r1, r3) = ${modelP} ms)`);
  assert.equal(modelP, Math.min(R1, R3));
  assert.ok(savedP >= modelP - pooled.on.tolerance && savedP <= modelP + pooled.off.tolerance,
    `-L with the pool: early SYN saved ${savedP.toFixed(2)} ms, expected ${modelP} ms within -${pooled.on.tolerance.toFixed(2)}/+${pooled.off.tolerance.toFixed(2)} ms`);
});
