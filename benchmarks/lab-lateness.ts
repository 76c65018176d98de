/**
 * Merges the lateness records that labs append at destroy() when
 * TCPSPLIT_LAB_LATENESS_FILE is set, into p50 / p99 / max per link (both directions)
 * and per link direction, as a markdown table. E.g. for a whole test run:
 *
 *   rm -f /tmp/late.jsonl
 *   TCPSPLIT_LAB_LATENESS_FILE=/tmp/late.jsonl npm test
 *   node dist/benchmarks/lab-lateness.js /tmp/late.jsonl
 *
 * Quantiles are bucket upper bounds (<=), so they never understate.
 */
import { readFileSync } from 'node:fs';
import { LATE_BUCKETS_MS } from '../src/lab/emulator/counters.js';
import { lateQuantileMs, type LatenessRecord } from '../src/lab/emulator/lateness.js';

interface Sum { n: number; lateSumMs: number; maxMs: number; histogram: number[]; labs: Set<string> }

function main(): void {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: node dist/benchmarks/lab-lateness.js <file.jsonl>\n');
    process.exit(2);
  }
  const records = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as LatenessRecord);
  const groups = new Map<string, Sum>();
  const add = (key: string, r: LatenessRecord): void => {
    if (r.bucketsMs.join() !== LATE_BUCKETS_MS.join()) throw new Error(`record with other buckets (${r.bucketsMs.join()}): not mergeable`);
    const g = groups.get(key) ?? { n: 0, lateSumMs: 0, maxMs: 0, histogram: r.histogram.map(() => 0), labs: new Set() };
    g.n += r.txPackets;
    g.lateSumMs += r.lateMeanMs * r.txPackets;
    g.maxMs = Math.max(g.maxMs, r.lateMaxMs);
    r.histogram.forEach((v, i) => { g.histogram[i] = (g.histogram[i] ?? 0) + v; });
    g.labs.add(`${String(r.pid)}/${r.prefix}`);
    groups.set(key, g);
  };
  for (const r of records) {
    add(r.link, r);
    add(`${r.link} ${r.dir}`, r);
    add('all links', r);
  }
  const ms = (v: number): string => v.toFixed(3);
  const frac = (g: Sum, overMs: number): string => {
    const idx = LATE_BUCKETS_MS.findIndex((b) => b >= overMs);
    const over = g.histogram.slice(idx + 1).reduce((a, b) => a + b, 0);
    return `${(100 * over / Math.max(1, g.n)).toFixed(3)}%`;
  };
  process.stdout.write(`${String(records.length)} records from ${file}\n\n`);
  process.stdout.write('| Link | labs | packets | mean ms | p50 ms (<=) | p99 ms (<=) | p99.9 ms (<=) | max ms | > 1 ms | > 5 ms |\n');
  process.stdout.write('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n');
  for (const key of [...groups.keys()].sort((a, b) => (a === 'all links' ? 1 : b === 'all links' ? -1 : a.localeCompare(b)))) {
    const g = groups.get(key);
    if (g === undefined) continue;
    process.stdout.write(`| ${key} | ${String(g.labs.size)} | ${String(g.n)} | ${ms(g.lateSumMs / Math.max(1, g.n))} | ` +
      `${ms(lateQuantileMs(g.histogram, 0.5, g.maxMs))} | ${ms(lateQuantileMs(g.histogram, 0.99, g.maxMs))} | ` +
      `${ms(lateQuantileMs(g.histogram, 0.999, g.maxMs))} | ${ms(g.maxMs)} | ${frac(g, 1)} | ${frac(g, 5)} |\n`);
  }
}

main();
