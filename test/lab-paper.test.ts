import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeOutputs } from '../src/cli/paper-command.js';
import { PROFILES, scaleDelays } from '../src/lab/index.js';
import { configuration } from '../src/paper/configurations.js';
import { predict } from '../src/paper/model.js';
import { summarize, validateResults, type Results } from '../src/paper/results.js';
import { runPaper, type PaperRun, type Sample } from '../src/paper/runner.js';
import { parseSizes, sizeLabel } from '../src/paper/sizes.js';
import { TRAVERSAL_BASE_MS, assertNoLabLeft, needsRoot } from './helpers/lab.js';

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

const PREFIX = 'ttpaper';
const out = mkdtempSync(join(tmpdir(), 'tcpsplit-paper-test-'));
after(() => { rmSync(out, { recursive: true, force: true }); });

/**
 * What the hosts add to a median first byte, beyond the emulated links (the model has
 * none of it). curl and nginx: as in lab-web.test.ts (2.5 ms, there on the fastest of
 * three). Each tcpsplit relay: accept, the header (HMAC), connect and the first write in
 * a Node process; measured 2-3.5 ms a relay on this 2-core machine at load average 3-5
 * (split's median 6.3-7.0 ms above the model, e2e's 1.3-1.6), and up to 6.5 ms a relay
 * with a 10 MB paper run beside it (12.1-13.7 ms above; e2e 0.9-1.8).
 */
const FIRST_BYTE_HOST_MS = 2.5;
const RELAY_HOST_MS = 7;
/** As test/helpers/lab.ts: the lateness share per traversal is capped; beyond, the run was starved. */
const TRAVERSAL_LATE_CAP_MS = 0.25;

void test('lab paper (root, netns): the quick form with e2e and split: every median first byte is within the lateness-derived tolerance of the model, and the outputs are written', { skip: needsRoot, timeout: 180_000 }, async (t) => {
  const sizes = parseSizes('10kb,100kb');
  const profile = scaleDelays(PROFILES.paper, 0.1);
  // A download the runner flagged (its links' p90 lateness, over its round trips, could
  // have moved it by more than 3 ms: src/paper/runner.ts) was starved by the machine, not
  // slowed by tcpsplit: it is left out of the check, as the report marks it. Not the p99:
  // a 10 KB download has a few dozen packets, so its p99 is its one latest packet, and
  // in CI a p99 cap left 2 of 10 downloads of a cell. Each cell needs MIN_FIT unflagged
  // downloads; if a run left fewer, more runs add samples (at most EXTRA_RUNS), and the
  // check then fails as it should.
  const RUNS = 5;
  const MIN_FIT = 3;
  const EXTRA_RUNS = 3;
  /** Before each extra run: a starved spell here can last a minute (test/helpers/lab.ts). */
  const EXTRA_PAUSE_MS = 10_000;
  const fit = (s: Sample): boolean => !s.flagged;
  const runOnce = async (): Promise<PaperRun> => {
    try {
      return await runPaper({ profile, configs: ['e2e', 'split'], sizes, runs: RUNS, cc: 'cubic', prefix: PREFIX });
    } finally {
      assertNoLabLeft(PREFIX);
    }
  };
  const run = await runOnce();
  assert.equal(run.samples.length, 2 * 2 * RUNS);
  const samples = [...run.samples];
  const cells = (list: readonly Sample[]): Map<string, Sample[]> => {
    const m = new Map<string, Sample[]>();
    for (const x of list) m.set(`${x.config} ${String(x.sizeBytes)}`, [...(m.get(`${x.config} ${String(x.sizeBytes)}`) ?? []), x]);
    return m;
  };
  for (let extra = 1; extra <= EXTRA_RUNS && [...cells(samples).values()].some((c) => c.filter(fit).length < MIN_FIT); extra++) {
    t.diagnostic(`a cell had fewer than ${String(MIN_FIT)} unflagged downloads (the machine starved the emulator): run ${String(extra)} of at most ${String(EXTRA_RUNS)} more, in ${String(EXTRA_PAUSE_MS / 1000)} s`);
    await new Promise((r) => setTimeout(r, EXTRA_PAUSE_MS));
    samples.push(...(await runOnce()).samples);
  }
  const results: Results = JSON.parse(JSON.stringify(summarize(run, 'cubic', RUNS))) as Results;
  assert.deepEqual(validateResults(results), []);
  assert.equal(results.results.length, 4);
  for (const [cell, all] of cells(samples)) {
    const mine = all.filter(fit);
    const first = all[0];
    if (first === undefined) continue;
    assert.ok(mine.length >= MIN_FIT, `${cell}: only ${String(mine.length)} of ${String(all.length)} downloads were not flagged for lateness: the machine starved the lab`);
    const conf = configuration(first.config);
    const model = predict(run.rtts, conf.path, first.sizeBytes);
    const row = results.results.find((r) => r.config === first.config && r.sizeBytes === first.sizeBytes);
    assert.equal(row?.model.ttfb, model.ttfbMs / 1000, 'the report uses the model');
    const medianMs = median(mine.map((x) => x.ttfb * 1000));
    // Each link is crossed 4 times before the first byte (2 round trips' worth) in both timelines.
    const traversals = 4 * conf.links.length;
    // Per traversal: the p90 lateness (as the runner's flag), capped as the lab's timing tests cap it.
    const late = Math.min(Math.max(...mine.map((x) => x.lateP90Ms)), TRAVERSAL_LATE_CAP_MS);
    const relays = conf.path.kind === 'split' ? 2 : 0;
    const tolerance = traversals * (TRAVERSAL_BASE_MS + late) + FIRST_BYTE_HOST_MS + relays * RELAY_HOST_MS;
    const what = `${first.config} ${sizeLabel(first.sizeBytes)}: median first byte ${medianMs.toFixed(2)} ms over ${String(mine.length)} of ${String(all.length)} downloads, model ${model.ttfbMs.toFixed(2)} ms`;
    t.diagnostic(`${what}, tolerance ${tolerance.toFixed(2)} ms (${String(traversals)} traversals x (${String(TRAVERSAL_BASE_MS)} + lateness p90 ${late.toFixed(2)} ms) + ${String(FIRST_BYTE_HOST_MS)} + ${String(relays)} x ${String(RELAY_HOST_MS)} ms)`);
    // The emulator never sends early, and the model counts only link delays: never below it.
    assert.ok(medianMs >= model.ttfbMs - 0.01, `${what}: below the model, so the model misses a shortcut`);
    assert.ok(medianMs <= model.ttfbMs + tolerance, `${what}: more than ${tolerance.toFixed(2)} ms above the model`);
  }
  await writeOutputs(out, run, results);
  const json = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as unknown;
  assert.deepEqual(validateResults(json), []);
  const report = readFileSync(join(out, 'report.md'), 'utf8');
  assert.match(report, /\| 10 KB \| split \| KTCP \+TP \|/);
  assert.match(report, /early SYN saves about r1 \+ r3 .*not measured/);
  for (const f of ['fig3-ttfb', 'fig4-download']) {
    assert.match(readFileSync(join(out, `${f}.svg`), 'utf8'), /^<svg[^>]*>/);
    assert.deepEqual([...readFileSync(join(out, `${f}.png`)).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
  }
});
