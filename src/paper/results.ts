/**
 * results.json: the runs summarised per configuration and size beside the model.
 * Scripts rely on this shape (issue 10 §4); times are in seconds, as curl gives them.
 * validateResults() is the shape's one definition, and a test holds it.
 */
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, release } from 'node:os';
import { fileURLToPath } from 'node:url';
import { CONFIGURATIONS, configuration, type ConfigName } from './configurations.js';
import type { CongestionControl } from './congestion.js';
import { idealTtfbMs, predict, type PathRtts } from './model.js';
import type { PaperRun, Sample } from './runner.js';

export interface Spread {
  readonly median: number;
  readonly p10: number;
  readonly p90: number;
}

export interface ResultRow {
  readonly config: ConfigName;
  readonly sizeBytes: number;
  readonly ttfb: Spread;
  readonly total: Spread;
  readonly model: { readonly ttfb: number; readonly total: number };
  readonly runs: number;
  /** Runs whose emulator lateness could have moved the first byte noticeably (runner.ts). */
  readonly flaggedRuns: number;
  readonly lateP99MaxMs: number;
}

export interface ResultsMeta {
  readonly date: string;
  readonly finishedAt: string;
  readonly commit: string;
  readonly node: string;
  readonly kernel: string;
  readonly machine: { readonly cpus: number; readonly cpuModel: string; readonly loadAvg1m: number };
  readonly cc: CongestionControl;
  readonly runs: number;
  readonly configs: readonly ConfigName[];
  readonly sizes: readonly number[];
  readonly idealTtfb: number;
  readonly links: Readonly<Record<string, { readonly rttMs: number; readonly pingMinMs: number }>>;
}

export interface Results {
  readonly meta: ResultsMeta;
  readonly results: readonly ResultRow[];
}

/** The q-quantile (0..1), linear between order statistics (R's type 7). */
export function quantile(values: readonly number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const a = s[lo] ?? Number.NaN;
  const b = s[Math.min(lo + 1, s.length - 1)] ?? a;
  return a + (b - a) * (pos - lo);
}

export function spread(values: readonly number[]): Spread {
  return { median: quantile(values, 0.5), p10: quantile(values, 0.1), p90: quantile(values, 0.9) };
}

function gitCommit(): string {
  try {
    const root = fileURLToPath(new URL('../../..', import.meta.url));
    return execFileSync('git', ['-C', root, 'rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

export function summarize(run: PaperRun, cc: CongestionControl, runs: number): Results {
  const configs = CONFIGURATIONS.map((c) => c.name).filter((n) => run.samples.some((s) => s.config === n));
  const sizes = [...new Set(run.samples.map((s) => s.sizeBytes))].sort((a, b) => a - b);
  const results: ResultRow[] = [];
  for (const sizeBytes of sizes) {
    for (const config of configs) {
      const mine: Sample[] = run.samples.filter((s) => s.config === config && s.sizeBytes === sizeBytes);
      if (mine.length === 0) continue;
      const m = predict(run.rtts, configuration(config).path, sizeBytes);
      results.push({
        config, sizeBytes,
        ttfb: spread(mine.map((s) => s.ttfb)), total: spread(mine.map((s) => s.total)),
        model: { ttfb: m.ttfbMs / 1000, total: m.totalMs / 1000 }, runs: mine.length,
        flaggedRuns: mine.filter((s) => s.flagged).length,
        lateP99MaxMs: Math.max(...mine.map((s) => s.lateP99Ms)),
      });
    }
  }
  const cpu = cpus();
  return {
    meta: {
      date: run.startedAt, finishedAt: run.finishedAt, commit: gitCommit(), node: process.version, kernel: release(),
      machine: { cpus: cpu.length, cpuModel: cpu[0]?.model ?? 'unknown', loadAvg1m: loadavg()[0] ?? 0 },
      cc, runs, configs, sizes, idealTtfb: idealTtfbMs(run.rtts) / 1000,
      links: run.links,
    },
    results,
  };
}

/** The RTTs a results file was measured with, as the model takes them. */
export function rttsOfResults(r: Results): PathRtts {
  const rtt = (l: string): number => r.meta.links[l]?.rttMs ?? Number.NaN;
  return { r1Ms: rtt('client-rc'), r2Ms: rtt('rc-rs'), r3Ms: rtt('rs-server'), riMs: rtt('internet') };
}

/** Every way `value` differs from the results.json shape; empty when it fits. */
export function validateResults(value: unknown): string[] {
  const errors: string[] = [];
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const num = (v: unknown, where: string): void => { if (typeof v !== 'number' || !Number.isFinite(v)) errors.push(`${where}: not a finite number`); };
  const str = (v: unknown, where: string): void => { if (typeof v !== 'string' || v === '') errors.push(`${where}: not a non-empty string`); };
  if (!isObj(value)) return ['top level: not an object'];
  const meta = value['meta'];
  if (!isObj(meta)) {
    errors.push('meta: not an object');
  } else {
    for (const k of ['date', 'commit', 'node', 'kernel']) str(meta[k], `meta.${k}`);
    if (meta['cc'] !== 'cubic' && meta['cc'] !== 'bbr') errors.push('meta.cc: not cubic or bbr');
    num(meta['runs'], 'meta.runs');
    const links = meta['links'];
    if (!isObj(links)) errors.push('meta.links: not an object');
    else {
      for (const l of ['client-rc', 'rc-rs', 'rs-server', 'internet']) {
        const link = links[l];
        if (!isObj(link)) errors.push(`meta.links.${l}: missing`);
        else num(link['rttMs'], `meta.links.${l}.rttMs`);
      }
    }
  }
  const results = value['results'];
  if (!Array.isArray(results) || results.length === 0) {
    errors.push('results: not a non-empty array');
  } else {
    results.forEach((r: unknown, i) => {
      const at = `results[${String(i)}]`;
      if (!isObj(r)) { errors.push(`${at}: not an object`); return; }
      if (typeof r['config'] !== 'string' || !CONFIGURATIONS.some((c) => c.name === r['config'])) errors.push(`${at}.config: not a configuration name`);
      if (typeof r['sizeBytes'] !== 'number' || !Number.isInteger(r['sizeBytes']) || r['sizeBytes'] < 1) errors.push(`${at}.sizeBytes: not a positive integer`);
      for (const k of ['ttfb', 'total']) {
        const s = r[k];
        if (!isObj(s)) { errors.push(`${at}.${k}: not an object`); continue; }
        for (const q of ['median', 'p10', 'p90']) num(s[q], `${at}.${k}.${q}`);
        if (typeof s['p10'] === 'number' && typeof s['median'] === 'number' && typeof s['p90'] === 'number' && !(s['p10'] <= s['median'] && s['median'] <= s['p90'])) {
          errors.push(`${at}.${k}: p10 <= median <= p90 does not hold`);
        }
      }
      const model = r['model'];
      if (!isObj(model)) errors.push(`${at}.model: not an object`);
      else { num(model['ttfb'], `${at}.model.ttfb`); num(model['total'], `${at}.model.total`); }
      if (typeof r['runs'] !== 'number' || !Number.isInteger(r['runs']) || r['runs'] < 1) errors.push(`${at}.runs: not a positive integer`);
    });
  }
  return errors;
}
