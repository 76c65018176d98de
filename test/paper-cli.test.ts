import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LabConfigError } from '../src/errors.js';
import { parsePaperArgs } from '../src/cli/paper-command.js';
import { CONFIGURATIONS, runnableConfigs } from '../src/paper/configurations.js';
import { quantile, spread, validateResults } from '../src/paper/results.js';
import { parseSize, parseSizes, sizeLabel } from '../src/paper/sizes.js';

function parse(args: string[], now?: Date): Exclude<ReturnType<typeof parsePaperArgs>, 'help' | { readonly render: string }> {
  const p = parsePaperArgs(args, now);
  assert.ok(p !== 'help' && !('render' in p));
  return p;
}

void test('paper cli: --quick is 3 runs of 10 KB and 1 MB at RTTs x 0.1 with every runnable configuration; defaults are the paper\'s', () => {
  const quick = parse(['--quick']);
  assert.equal(quick.runs, 3);
  assert.deepEqual(quick.sizes.map((s) => s.bytes), [10240, 1048576]);
  assert.equal(quick.delayScale, 0.1);
  assert.deepEqual(quick.configs, runnableConfigs());
  assert.equal(quick.cc, 'cubic');
  const full = parse([], new Date('2026-12-01T10:00:00.123Z'));
  assert.equal(full.runs, 10);
  assert.deepEqual(full.sizes.map((s) => s.file), ['10kb', '100kb', '1mb', '10mb']);
  assert.equal(full.delayScale, 1);
  assert.match(full.out, /paper-results\/2026-12-01T100000Z$/);
  assert.equal(parsePaperArgs(['-h']), 'help');
  assert.deepEqual(parsePaperArgs(['--render', '/tmp/x']), { render: '/tmp/x' });
});

void test('paper cli: --configs keeps the table\'s order; every configuration runs (one that could not would be refused by name)', () => {
  assert.deepEqual(runnableConfigs(), ['e2e', 'nosplit', 'ssh', 'split', 'split+es', 'split+es+cp', 'full']);
  const a = parse(['--configs', 'split,e2e', '--cc', 'bbr', '--runs', '5']);
  assert.deepEqual(a.configs, ['e2e', 'split']);
  assert.equal(a.cc, 'bbr');
  for (const c of CONFIGURATIONS) {
    const needs = (c as { needs?: string }).needs;
    if (needs === undefined) continue;
    assert.throws(() => parsePaperArgs(['--configs', `e2e,${c.name}`]), (err: unknown) =>
      err instanceof LabConfigError && err.message.includes(`'${c.name}' cannot run yet: it needs ${needs}`));
  }
  for (const bad of [['--configs', 'nope'], ['--cc', 'reno'], ['--runs', '0'], ['--runs', '2.5'], ['--sizes', '10kb,10k'], ['--sizes', '3parsecs'], ['--delay-scale', 'x'], ['--bogus']]) {
    assert.throws(() => parsePaperArgs(bad), LabConfigError, bad.join(' '));
  }
});

void test('paper sizes: KB and MB are 1024-based, as the paper\'s files; labels and file names follow', () => {
  assert.deepEqual(parseSize('10kb'), { bytes: 10240, file: '10kb', label: '10 KB' });
  assert.deepEqual(parseSize('1M'), { bytes: 1048576, file: '1mb', label: '1 MB' });
  assert.deepEqual(parseSize('1500'), { bytes: 1500, file: '1500b', label: '1500 B' });
  assert.deepEqual(parseSizes('1mb,10kb').map((s) => s.bytes), [10240, 1048576]);
  assert.equal(sizeLabel(10 * 1024 * 1024), '10 MB');
  assert.equal(sizeLabel(1500), '1500 B');
});

void test('paper stats: quantiles interpolate between order statistics', () => {
  assert.equal(quantile([3, 1, 2], 0.5), 2);
  assert.equal(quantile([1, 2, 3, 4], 0.5), 2.5);
  assert.ok(Math.abs(quantile([0, 10], 0.1) - 1) < 1e-12);
  assert.deepEqual(spread([5]), { median: 5, p10: 5, p90: 5 });
  assert.ok(Number.isNaN(quantile([], 0.5)));
});

const GOOD = {
  meta: {
    date: '2026-12-01T10:00:00Z', commit: 'abc', node: 'v20', kernel: '6.1', cc: 'cubic', runs: 50,
    links: { 'client-rc': { rttMs: 32.7 }, 'rc-rs': { rttMs: 215 }, 'rs-server': { rttMs: 26 }, 'internet': { rttMs: 273.7 } },
  },
  results: [{
    config: 'split+es', sizeBytes: 10240,
    ttfb: { median: 0.489, p10: 0.488, p90: 0.491 }, total: { median: 0.490, p10: 0.489, p90: 0.492 },
    model: { ttfb: 0.4887, total: 0.4897 }, runs: 50,
  }],
};

void test('paper results.json: the issue\'s example fits the shape; each kind of damage is named', () => {
  assert.deepEqual(validateResults(GOOD), []);
  const damaged = (f: (v: typeof GOOD) => unknown): string[] => validateResults(f(structuredClone(GOOD)));
  assert.match(damaged((v) => { v.meta.cc = 'reno'; return v; }).join(), /meta\.cc/);
  assert.match(damaged((v) => { (v.meta.links as Record<string, unknown>)['rc-rs'] = undefined; return v; }).join(), /meta\.links\.rc-rs/);
  assert.match(damaged((v) => { (v.results[0] as { config: string }).config = 'fast'; return v; }).join(), /config/);
  assert.match(damaged((v) => { (v.results[0] as { ttfb: { p10: number } }).ttfb.p10 = 1; return v; }).join(), /p10 <= median <= p90/);
  assert.match(damaged((v) => { (v.results[0] as { model: unknown }).model = null; return v; }).join(), /model/);
  assert.match(damaged((v) => { v.results = []; return v; }).join(), /results/);
  assert.deepEqual(validateResults('x'), ['top level: not an object']);
});
