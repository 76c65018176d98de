/**
 * Turbo-Start in the emulated WAN (issue 9, "Pre-established relay connections and
 * Turbo-Start"): what docs/model.md predicts, measured through two relays with the pool
 * on and early SYN off (so that the first byte is the same, 2 r1 + r2 + 2 r3, with Turbo
 * on and off). Scaled RTTs as in lab-pool and lab-early-syn: client-rc 10 ms, rc-rs
 * 60 ms, rs-server 8 ms. CUBIC on every leg, as the paper's hosts (src/paper/congestion.ts).
 *
 * The claims:
 * - Turbo-Start shortens a 1 MB download by about the slow-start rounds it saves on rc-rs
 *   (model: 7 rounds from an initial window of 10, 4 from 100: 3 r2), and changes a 10 KB
 *   download (one window either way) by less than a few milliseconds.
 * - No slow start after idle on pooled connections. Linux restarts the congestion window
 *   of a connection that sent nothing for longer than its RTO (tcp_slow_start_after_idle,
 *   on by default; checked below), but the window it restarts at is the route's initcwnd
 *   (tcp_cwnd_restart: restart_cwnd = tcp_init_cwnd(tp, dst)). With Turbo-Start's route
 *   toward the peer in place, that is Turbo's 100 segments, so a pooled leg that sat idle
 *   costs nothing. So every 1 MB download below takes a pooled leg that has been idle at
 *   R_S (the sender of the response) for >= 1.5 s and longer than its RTO (read from ss:
 *   lastsnd, rto), and with Turbo on its time must still match the model that starts at
 *   Turbo's window.
 *
 * Two things the relays do today that the test works around, each said where it is done:
 * - R_S learns its route toward R_C from R_C's first authenticated connection, so R_C's
 *   first pooled connections were accepted at the default window (docs/pool.md, "Not done
 *   yet"). R_C is restarted once R_S has its route, so that every pooled leg used was
 *   accepted with it. Both phases do the same.
 * - (Fixed since: Turbo-Start's host route once dropped the `congctl` of the route it
 *   shadows, so in this lab, where CUBIC is set per route and the namespaces' default is
 *   this kernel's BBR, the legs to the peer ran BBR with Turbo on and CUBIC with it off.
 *   The test checks R_S's Turbo route keeps CUBIC and that every leg used runs it.)
 *
 * Tolerances. Times are medians. The emulator never sends early, and CUBIC's slow start
 * can at most double its window per round trip, so the model is a lower bound on every
 * median (less 0.01 ms). Above it: per traversal of an emulated link on the critical
 * path, TRAVERSAL_BASE_MS plus the p99 lateness of the emulator over the packets of that
 * size's downloads (capped, as test/helpers/lab.ts caps it), and the hosts' work, as
 * lab-paper.test.ts allows on medians (curl and nginx 2.5 ms, each relay 7 ms). The
 * Turbo-off download is also slowed by what the model leaves out (below, RWND_ROUNDS).
 * The lateness is read over the packets of each size's own downloads (LatenessWindows),
 * and starvation (retryIfStarved) over those of the 10 KB downloads: a 1 MB download's
 * own bursts (up to 400 segments in one window with Turbo on) make the emulator late by
 * design, measured 0.25-10 ms at p99 on rc-rs per download on this 2-core machine.
 * (Here, with another relay pair running beside, the 10 KB packets' p99 was above the
 * cap too, 5-31 ms: a real failure was retried six times and failed after 300 s.)
 */
import { after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab, LINK_NAMES, startNginx, addressOf, type DirectionCounters } from '../src/lab/index.js';
import { profileFromDelays } from '../src/lab/link-config.js';
import { RelayProcess } from '../src/demo/relay-process.js';
import { curlArgs, median, parseCurlTiming } from '../src/demo/curl-timing.js';
import type { LinkName } from '../src/lab/address-plan.js';
import { DEFAULT_TRANSFER, predict, slowStartRounds, type SplitPath } from '../src/paper/model.js';
import { rttsOf } from '../src/paper/runner.js';
import { setLabCongestionControl } from '../src/paper/congestion.js';
import { parseSize } from '../src/paper/sizes.js';
import { assertNoLabLeft, FIRST_BYTE_HOST_MS, labTimingTest, latenessReport, lateP99Ms, markLateness, RELAY_HOST_MS, retryIfStarved, traversalAllowanceMs, type LatenessMark } from './helpers/lab.js';

const PREFIX = 'ttrb';
const R1 = 10;
const R2 = 60;
const R3 = 8;
const PATH: readonly LinkName[] = ['client-rc', 'rc-rs', 'rs-server'];
const RC_PORT = 8080;
const RS_PORT = 7000;
const METRICS = '127.0.0.1:9109';
const SMALL = parseSize('10kb');
const LARGE = parseSize('1mb');
/** Rounds per phase: SMALL_PER_ROUND 10 KB downloads, an idle pause, one 1 MB download. */
const ROUNDS = 5;
const SMALL_PER_ROUND = 3;
/** Idle before each 1 MB download, at R_S: above the legs' RTO (~264 ms at r2 = 60 ms) by far. */
const IDLE_MS = 1500;
/** The pool's low watermark (its default), per worker: "full" means this many ready per worker. */
const POOL_LOW = 4;
/** The lab's congestion control, and the one the model's slow start describes. */
const CC = 'cubic';
/** As lab-paper.test.ts, on medians: curl and nginx, and each relay's own work (test/helpers/lab.ts). */
const HOST_MS = FIRST_BYTE_HOST_MS + 2 * RELAY_HOST_MS;
/**
 * The 10 KB medians of the two phases run the same code on the hosts; what differs is
 * the hosts' jitter between two medians of 15 downloads taken seconds apart. Measured here
 * (2 workers per relay, load average ~2 with another relay pair running beside): |off - on|
 * of 0.1-3.9 ms over 4 runs of this test, 0.6-4.3 ms over 4 earlier runs with 4-8
 * downloads a phase. With the lateness share (at most 10 x 0.25 ms) the tolerance is at
 * most 5.5 ms: "a few milliseconds".
 */
const HOST_JITTER_MS = 3;
/**
 * What the model leaves out, on the Turbo-off leg only: the receive window. With Turbo-Start
 * off, R_C's legs get neither the route's initrwnd nor the 4 MiB buffers, so R_C
 * advertises 64 KB at first and autotuning grows it as the relay reads. R_S's sender was
 * receive-window limited for 60-372 ms (14-57%) of a Turbo-off 1 MB download
 * (tcpi_rwnd_limited read by ss at R_S; 0 with Turbo on, where the window starts at 100
 * segments and the buffer is 4 MiB). How far autotuning lags depends on how fast the
 * relay reads, so on the CPUs: the Turbo-off median sat 12-131 ms above the model in 7
 * runs of this test (up to 2.2 rc-rs rounds), 135 and 193 ms in two attempts on a starved
 * host (steal 4-6%), while the Turbo-on median stayed within 5-16 ms of its model.
 * Allowed: three rounds, on the upper side of the saving only (the model stays a lower
 * bound for the Turbo-off time, and the lower side of the saving is the tight one).
 */
const RWND_ROUNDS = 3;

/** -L with the pool, early SYN off: the TARGET frame leaves R_C on the pooled leg at accept. */
const POOLED: SplitPath = { kind: 'split', rcLeg: 'pooled', rcTarget: 'at-accept', rsTarget: 'first-bytes', dataWaitsForRs: false, turboRcRs: false };
const POOLED_TURBO: SplitPath = { ...POOLED, turboRcRs: true };
/** Emulated-link traversals to the first byte on this path: client-rc 4, rc-rs 2, rs-server 4. */
const FIRST_BYTE_TRAVERSALS = 10;

/**
 * The emulator's lateness over the packets of some downloads only (their histograms
 * summed), read through the same linkCounters() as a Lab, so that the helpers of
 * test/helpers/lab.ts (allowances, starvation) can use it.
 */
class LatenessWindows {
  readonly #lab: Lab;
  readonly #sum = new Map<string, number[]>();

  constructor(lab: Lab) {
    this.#lab = lab;
  }

  async during<T>(fn: () => Promise<T>): Promise<T> {
    const before = markLateness(this.#lab);
    try {
      return await fn();
    } finally {
      for (const l of LINK_NAMES) {
        const c = this.#lab.linkCounters(l);
        for (const [dir, d] of [['up', c.up], ['down', c.down]] as const) {
          const key = `${l} ${dir}`;
          const b = before.get(key) ?? [];
          const sum = this.#sum.get(key) ?? d.lateHistogram.map(() => 0);
          this.#sum.set(key, sum.map((v, i) => v + (d.lateHistogram[i] ?? 0) - (b[i] ?? 0)));
        }
      }
    }
  }

  linkCounters(name: LinkName): { up: DirectionCounters; down: DirectionCounters } {
    const c = this.#lab.linkCounters(name);
    const hist = (dir: 'up' | 'down'): number[] => this.#sum.get(`${name} ${dir}`) ?? c[dir].lateHistogram.map(() => 0);
    return { up: { ...c.up, lateHistogram: hist('up') }, down: { ...c.down, lateHistogram: hist('down') } };
  }
}

interface PeerLeg { readonly cc: string; readonly cwnd: number; readonly lastsndMs: number; readonly rtoMs: number }

interface Phase {
  readonly smallMs: number[];
  readonly largeMs: number[];
  readonly largeTtfbMs: number[];
  /** Per 1 MB download: the shortest time any pooled leg at R_S had been idle just before it. */
  readonly idleMs: number[];
}

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

void labTimingTest('lab (root, netns): Turbo-Start shortens a 1 MB download by the rc-rs slow-start rounds it saves (pooled legs idle > RTO: no slow start after idle), and leaves a 10 KB download unchanged, as the model says', { timeout: 480_000 }, async (t) => {
  const profile = profileFromDelays({ 'client-rc': R1 / 2, 'rc-rs': R2 / 2, 'rs-server': R3 / 2 });
  const rtts = rttsOf(profile);
  const lab = await Lab.create({ prefix: PREFIX, profile });
  cleanups.push(async () => { await lab.destroy(); assertNoLabLeft(PREFIX); });
  await setLabCongestionControl(lab, CC);
  const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-lab-turbo-'));
  cleanups.push(() => { rmSync(dir, { recursive: true, force: true }); });
  const web = await startNginx(lab, { files: { [SMALL.file]: SMALL.bytes, [LARGE.file]: LARGE.bytes }, port: 80 });
  cleanups.push(() => web.stop());
  const keyFile = join(dir, 'relay.key');
  writeFileSync(keyFile, randomBytes(32), { mode: 0o600 });
  const rsAddr = addressOf('rs', 'rc');
  const rcAddr = addressOf('rc', 'client');
  const rcOnRs = addressOf('rc', 'rs');
  const serverAddr = addressOf('server', 'path');
  const url = (file: string): string => `http://${rcAddr}:${RC_PORT}/${file}`;

  // Without slow start after idle there would be nothing to show about idle legs.
  const idleSysctl = (await lab.exec('rs', 'sysctl', ['-n', 'net.ipv4.tcp_slow_start_after_idle'])).stdout.trim();
  assert.equal(idleSysctl, '1', 'net.ipv4.tcp_slow_start_after_idle in rs');

  const startRelay = async (node: 'rc' | 'rs', args: string[]): Promise<RelayProcess> => {
    const r = new RelayProcess(args, { spawner: (cmd, a) => lab.spawn(node, cmd, a) });
    cleanups.push(() => r.stop());
    await r.ready();
    return r;
  };
  const turboRoutes = async (node: 'rc' | 'rs'): Promise<string> => (await lab.exec(node, 'ip', ['-4', 'route', 'show', 'proto', '241'])).stdout.trim();
  /** The congestion control on a relay's Turbo-Start routes (proto 241). */
  const turboCongestion = async (node: 'rc' | 'rs'): Promise<string[]> => {
    const out = (await lab.exec(node, 'ip', ['-j', '-4', 'route', 'show', 'proto', '241'])).stdout.trim();
    const routes = JSON.parse(out === '' ? '[]' : out) as { metrics?: Record<string, number | string>[] }[];
    return routes.map((r) => {
      const c = (r.metrics ?? []).map((m) => m['congestion']).find((v) => v !== undefined);
      return typeof c === 'string' ? c : 'none';
    });
  };
  /** R_S's legs from R_C (its pooled connections, idle between downloads), from ss. */
  const peerLegs = async (): Promise<PeerLeg[]> => {
    const r = await lab.exec('rs', 'ss', ['-tinH', 'state', 'established', 'dst', rcOnRs]);
    return r.stdout.split('\n').filter((l) => /\bcwnd:\d/.test(l)).map((l) => ({
      cc: /^\s*([a-z0-9_]+)\s/.exec(l)?.[1] ?? '?',
      cwnd: Number(/\bcwnd:(\d+)/.exec(l)?.[1]),
      lastsndMs: Number(/\blastsnd:(\d+)/.exec(l)?.[1]),
      rtoMs: Number(/\brto:([\d.]+)/.exec(l)?.[1]),
    }));
  };
  const metric = async (name: string): Promise<number> => {
    const m = await lab.exec('rc', 'curl', ['-s', '--max-time', '5', `http://${METRICS}/metrics`]);
    return Number(new RegExp(`^${name}\\{peer="rs"\\} (\\d+)$`, 'm').exec(m.stdout)?.[1] ?? NaN);
  };
  const download = async (size: typeof SMALL): Promise<{ ttfbMs: number; totalMs: number }> => {
    const timing = parseCurlTiming(await lab.exec('client', 'curl', curlArgs(url(size.file), 30)), size.file);
    assert.equal(timing.httpCode, 200);
    assert.equal(timing.bytes, size.bytes);
    return { ttfbMs: timing.ttfbMs, totalMs: timing.totalMs };
  };

  const smallWindows = new LatenessWindows(lab);
  const largeWindows = new LatenessWindows(lab);
  const initialWindow = { off: DEFAULT_TRANSFER.initialWindowSegments, on: DEFAULT_TRANSFER.turboInitialWindowSegments };

  /** One phase: relays with Turbo-Start `turbo`, the downloads, the relays stopped (and their routes gone). */
  const phase = async (turbo: 'on' | 'off'): Promise<Phase> => {
    const common = ['--key-file', keyFile, '--early-syn', 'off', '--turbo', turbo];
    const rs = await startRelay('rs', ['--accept', `${rsAddr}:${RS_PORT}`, '--allow', '198.18.3.0/24', ...common]);
    const rcArgs = ['-L', `${rcAddr}:${RC_PORT}:${serverAddr}:80`, '--peer', `rs=${rsAddr}:${RS_PORT}`, '--route', '198.18.3.0/24=rs',
      '--pool', 'on', '--pool-low', String(POOL_LOW), '--metrics', METRICS, ...common];
    let rc = await startRelay('rc', rcArgs);
    try {
      if (turbo === 'on') {
        // R_S's route toward R_C comes with R_C's first authenticated connection.
        await rs.waitFor((l) => l['event'] === 'turbo' && l['address'] === rcOnRs);
        assert.match(await turboRoutes('rs'), new RegExp(`^${rcOnRs.replaceAll('.', '\\.')} .*initcwnd ${String(initialWindow.on)} initrwnd`, 'm'), 'R_S applied its route toward R_C');
        assert.deepEqual(await turboCongestion('rs'), [CC], 'R_S\'s Turbo-Start route keeps the route\'s congestion control');
      }
      // Every pooled leg used below is accepted at R_S with its route in place (header comment).
      await rc.stop();
      rc = await startRelay('rc', rcArgs);
      if (turbo === 'on') assert.match(await turboRoutes('rc'), new RegExp(`^${rsAddr.replaceAll('.', '\\.')} .*initcwnd ${String(initialWindow.on)} initrwnd`, 'm'), 'R_C applied its route toward R_S');
      const workers = Number(rc.lines.find((l) => l['event'] === 'ready')?.['workers'] ?? 1);
      for (let i = 0; i < 100 && await metric('tcpsplit_pool_size') < POOL_LOW * workers; i++) await sleep(50);
      assert.equal(await metric('tcpsplit_pool_size'), POOL_LOW * workers, 'the pool filled');

      const result: Phase = { smallMs: [], largeMs: [], largeTtfbMs: [], idleMs: [] };
      for (let round = 0; round < ROUNDS; round++) {
        for (let i = 0; i < SMALL_PER_ROUND; i++) result.smallMs.push((await smallWindows.during(() => download(SMALL))).totalMs);
        // Idle: every pooled leg at R_S (the take gets the youngest) has sent nothing for IDLE_MS.
        await sleep(IDLE_MS);
        let legs = await peerLegs();
        for (let i = 0; i < 30 && legs.some((l) => l.lastsndMs < IDLE_MS); i++) {
          await sleep(100);
          legs = await peerLegs();
        }
        const idle = Math.min(...legs.map((l) => l.lastsndMs));
        assert.ok(legs.length >= POOL_LOW * workers && legs.every((l) => l.lastsndMs >= IDLE_MS && l.lastsndMs > l.rtoMs), `turbo ${turbo}: pooled legs at R_S idle >= ${String(IDLE_MS)} ms and > RTO: ${JSON.stringify(legs)}`);
        assert.ok(legs.every((l) => l.cc === CC), `turbo ${turbo}: pooled legs at R_S run ${CC}: ${JSON.stringify(legs)}`);
        assert.ok(legs.every((l) => l.cwnd === initialWindow[turbo]), `turbo ${turbo}: pooled legs at R_S start at cwnd ${String(initialWindow[turbo])}: ${JSON.stringify(legs)}`);
        result.idleMs.push(idle);
        const large = await largeWindows.during(() => download(LARGE));
        result.largeMs.push(large.totalMs);
        result.largeTtfbMs.push(large.ttfbMs);
      }
      // Every download took a pooled leg: no miss, one take each.
      assert.equal(await metric('tcpsplit_pool_misses_total'), 0, 'no download missed the pool');
      assert.equal(await metric('tcpsplit_pool_takes_total'), ROUNDS * (SMALL_PER_ROUND + 1), 'one pooled leg per download');
      return result;
    } finally {
      await rc.stop();
      await rs.stop();
    }
  };
  /** The phases never overlap: Turbo-Start's routes are gone with the relays (checked after a phase, not in its finally, so no failure of the phase is hidden). */
  const assertRoutesGone = async (): Promise<void> => {
    assert.equal(await turboRoutes('rc'), '', 'R_C removed its Turbo-Start route at exit');
    assert.equal(await turboRoutes('rs'), '', 'R_S removed its Turbo-Start route at exit');
  };

  // The model: the same first byte, and the rc-rs leg's slow-start rounds from 10 or 100 segments.
  const segments = Math.ceil((LARGE.bytes + DEFAULT_TRANSFER.headerBytes) / DEFAULT_TRANSFER.mssBytes);
  const rounds = { off: slowStartRounds(segments, initialWindow.off), on: slowStartRounds(segments, initialWindow.on) };
  const model = {
    smallOff: predict(rtts, POOLED, SMALL.bytes).totalMs, smallOn: predict(rtts, POOLED_TURBO, SMALL.bytes).totalMs,
    largeOff: predict(rtts, POOLED, LARGE.bytes).totalMs, largeOn: predict(rtts, POOLED_TURBO, LARGE.bytes).totalMs,
  };
  const modelSaving = model.largeOff - model.largeOn;
  t.diagnostic(`model: 1 MB = ${String(segments)} segments, rc-rs rounds ${String(rounds.off)} (Turbo off) / ${String(rounds.on)} (on); ` +
    `1 MB ${model.largeOff.toFixed(1)} / ${model.largeOn.toFixed(1)} ms, saving ${modelSaving.toFixed(1)} ms; 10 KB ${model.smallOff.toFixed(1)} / ${model.smallOn.toFixed(1)} ms`);
  // Turbo's saving is whole rc-rs rounds, and the small file is in one window either way.
  assert.equal(modelSaving, (rounds.off - rounds.on) * R2);
  assert.equal(model.smallOff, model.smallOn);

  await retryIfStarved(t, smallWindows, PATH, async (since: LatenessMark) => {
    const largeSince = markLateness(largeWindows);
    const off = await phase('off');
    await assertRoutesGone();
    const on = await phase('on');
    await assertRoutesGone();
    const med = {
      smallOff: median(off.smallMs), smallOn: median(on.smallMs), largeOff: median(off.largeMs), largeOn: median(on.largeMs),
    };
    for (const [name, p] of [['off', off], ['on', on]] as const) {
      t.diagnostic(`Turbo ${name}: 10 KB ${p.smallMs.map((v) => v.toFixed(1)).join(' ')} ms; 1 MB ${p.largeMs.map((v) => v.toFixed(1)).join(' ')} ms ` +
        `(first byte ${p.largeTtfbMs.map((v) => v.toFixed(1)).join(' ')}), each after its pooled legs at R_S sat idle >= ${p.idleMs.map((v) => v.toFixed(0)).join(', ')} ms`);
    }
    const largeP99 = lateP99Ms(largeWindows, PATH, largeSince);
    const smallP99 = lateP99Ms(smallWindows, PATH, since);
    // Tolerances: per traversal on the critical path (the first byte's, then 2 per extra rc-rs round), the base and the lateness.
    const tolOn = traversalAllowanceMs(largeWindows, PATH, FIRST_BYTE_TRAVERSALS + 2 * (rounds.on - 1), undefined, largeSince) + HOST_MS;
    const tolOff = traversalAllowanceMs(largeWindows, PATH, FIRST_BYTE_TRAVERSALS + 2 * (rounds.off - 1), undefined, largeSince) + HOST_MS + RWND_ROUNDS * R2;
    // 10 KB: the same path and the same code in both phases; the base per traversal is in both and cancels.
    const tolSmall = traversalAllowanceMs(smallWindows, PATH, FIRST_BYTE_TRAVERSALS, 0, since) + HOST_JITTER_MS;
    const saving = med.largeOff - med.largeOn;
    const smallDiff = med.smallOff - med.smallOn;
    t.diagnostic(`medians: 1 MB off ${med.largeOff.toFixed(1)} ms (model ${model.largeOff.toFixed(1)}), on ${med.largeOn.toFixed(1)} ms (model ${model.largeOn.toFixed(1)}, tolerance +${tolOn.toFixed(1)}); ` +
      `saving ${saving.toFixed(1)} ms, model ${modelSaving.toFixed(1)} ms within -${tolOn.toFixed(1)}/+${tolOff.toFixed(1)} ms`);
    t.diagnostic(`medians: 10 KB off ${med.smallOff.toFixed(1)} ms, on ${med.smallOn.toFixed(1)} ms (model ${model.smallOff.toFixed(1)}): off - on ${smallDiff.toFixed(2)} ms, tolerance ${tolSmall.toFixed(2)} ms`);
    t.diagnostic(`emulator lateness p99 (capped at 0.25 ms a traversal in the tolerances): 10 KB downloads ${smallP99.toFixed(3)} ms, 1 MB downloads ${largeP99.toFixed(3)} ms; whole run: ${latenessReport(lab, PATH).split('\n').map((l) => l.trim()).join('; ')}`);

    // No configuration beats its model (the emulator never sends early; slow start at most doubles).
    for (const [what, got, floor] of [['10 KB, Turbo off', med.smallOff, model.smallOff], ['10 KB, Turbo on', med.smallOn, model.smallOn], ['1 MB, Turbo off', med.largeOff, model.largeOff], ['1 MB, Turbo on', med.largeOn, model.largeOn]] as const) {
      assert.ok(got >= floor - 0.01, `${what}: median ${got.toFixed(2)} ms is below the model's ${floor.toFixed(2)} ms`);
    }
    // The saving: the model's rounds (clearly positive: a Turbo-Start whose routes are not applied saves nothing).
    assert.ok(saving >= modelSaving - tolOn && saving > modelSaving / 2,
      `1 MB: Turbo-Start saved ${saving.toFixed(2)} ms, model ${modelSaving.toFixed(2)} ms (${String(rounds.off - rounds.on)} rc-rs rounds), at least ${(modelSaving - tolOn).toFixed(2)} ms expected`);
    assert.ok(saving <= modelSaving + tolOff,
      `1 MB: Turbo-Start saved ${saving.toFixed(2)} ms, model ${modelSaving.toFixed(2)} ms, at most ${(modelSaving + tolOff).toFixed(2)} ms expected (with ${String(RWND_ROUNDS)} rc-rs rounds for the receive window)`);
    // 1 MB with Turbo on, on legs idle > RTO: the model that starts at Turbo's window
    // (slow start after idle restarts at the route's initcwnd, 100, not 10).
    assert.ok(med.largeOn <= model.largeOn + tolOn,
      `1 MB with Turbo-Start on idle pooled legs: median ${med.largeOn.toFixed(2)} ms > model ${model.largeOn.toFixed(2)} ms (${String(rounds.on)} rc-rs rounds from ${String(initialWindow.on)} segments) + ${tolOn.toFixed(2)} ms`);
    // 10 KB: neutral.
    assert.ok(Math.abs(smallDiff) <= tolSmall, `10 KB: Turbo-Start changed the median download by ${smallDiff.toFixed(2)} ms (off - on), more than ${tolSmall.toFixed(2)} ms`);
  });
});
