/**
 * report.md: the measured tables beside the model, the distance from the ideal, the
 * paper's headline claims checked against this run, and the paper's own numbers.
 */
import { CONFIGURATIONS, configuration, type ConfigName, type Configuration } from './configurations.js';
import { formatTimeline, idealTtfbMs, predict, timeline } from './model.js';
import { rttsOfResults, type ResultRow, type Results } from './results.js';
import { sizeLabel } from './sizes.js';

const ms = (s: number): string => (s * 1000).toFixed(1);

/** A saving agrees with the model when within this share of it, or CLAIM_FLOOR_MS. */
const CLAIM_SHARE = 0.15;
const CLAIM_FLOOR_MS = 3;

function row(r: Results, config: ConfigName, sizeBytes: number): ResultRow | undefined {
  return r.results.find((x) => x.config === config && x.sizeBytes === sizeBytes);
}

/** The table printed on the terminal and at the top of report.md. */
export function formatTable(r: Results): string {
  const lines = [
    '| size | configuration | paper | first byte (ms) median [p10, p90] | model | Δ | download (ms) median [p10, p90] | model | Δ | flagged runs |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const x of r.results) {
    const c = configuration(x.config);
    lines.push(`| ${sizeLabel(x.sizeBytes)} | ${x.config} | ${c.paperName} | ${ms(x.ttfb.median)} [${ms(x.ttfb.p10)}, ${ms(x.ttfb.p90)}] | ${ms(x.model.ttfb)} | ` +
      `${signed(x.ttfb.median - x.model.ttfb)} | ${ms(x.total.median)} [${ms(x.total.p10)}, ${ms(x.total.p90)}] | ${ms(x.model.total)} | ` +
      `${signed(x.total.median - x.model.total)} | ${String(x.flaggedRuns)}/${String(x.runs)} |`);
  }
  return lines.join('\n');
}

function signed(s: number): string {
  const v = s * 1000;
  return `${v >= 0 ? '+' : ''}${v.toFixed(1)}`;
}

interface Claim {
  readonly claim: string;
  readonly paper: string;
  readonly verdict: string;
}

function savingClaim(r: Results, what: string, paper: string, from: ConfigName, to: ConfigName, metric: 'ttfb' | 'total', onlySize?: number): Claim {
  const rtts = rttsOfResults(r);
  const sizes = onlySize === undefined ? r.meta.sizes : [onlySize];
  const modelSaving = (size: number): number => {
    const a = predict(rtts, configuration(from).path, size);
    const b = predict(rtts, configuration(to).path, size);
    return metric === 'ttfb' ? a.ttfbMs - b.ttfbMs : a.totalMs - b.totalMs;
  };
  const missing = [from, to].filter((c) => !r.meta.configs.includes(c));
  if (missing.length > 0) {
    const needs = missing.map((c) => configuration(c).needs ?? 'a run with it').join('; ');
    return { claim: what, paper, verdict: `not measured: ${missing.join(' and ')} not in this run (${needs}). The model predicts ${modelSaving(sizes[0] ?? 10240).toFixed(1)} ms for these RTTs.` };
  }
  const parts: string[] = [];
  let ok = true;
  for (const size of sizes) {
    const a = row(r, from, size);
    const b = row(r, to, size);
    if (a === undefined || b === undefined) continue;
    const measured = (a[metric].median - b[metric].median) * 1000;
    const model = modelSaving(size);
    const tol = Math.max(CLAIM_FLOOR_MS, CLAIM_SHARE * Math.abs(model));
    ok &&= Math.abs(measured - model) <= tol;
    parts.push(`${sizeLabel(size)}: ${measured.toFixed(1)} ms (model ${model.toFixed(1)} ± ${tol.toFixed(1)})`);
  }
  return { claim: what, paper, verdict: `${ok ? 'holds' : 'does not hold'}: ${parts.join('; ')}` };
}

function claims(r: Results): Claim[] {
  const rtts = rttsOfResults(r);
  const out = [
    savingClaim(r, `early SYN saves about r1 + r3 = ${(rtts.r1Ms + rtts.r3Ms).toFixed(1)} ms of first byte (split → split+es)`, '≈ 60 ms measured, 59 ms predicted', 'split', 'split+es', 'ttfb'),
    savingClaim(r, `the pool saves about r2 − r1 = ${(rtts.r2Ms - rtts.r1Ms).toFixed(1)} ms of first byte (split+es → split+es+cp)`, '≈ 180 ms (215 − 33 = 182 predicted)', 'split+es', 'split+es+cp', 'ttfb'),
  ];
  const small = r.meta.sizes[0] ?? 10240;
  out.push(savingClaim(r, `Turbo-Start is neutral at ${sizeLabel(small)} (split+es+cp → full, download time)`, '10 KB completes ≈ 1 ms after its first byte', 'split+es+cp', 'full', 'total', small));
  const best = (['full', 'split+es+cp', 'split+es', 'split'] as const).find((c) => r.meta.configs.includes(c));
  if (best === undefined || !r.meta.configs.includes('e2e')) {
    out.push({ claim: 'full is up to 3× faster than e2e (download time)', paper: 'up to 3×, depending on the size', verdict: 'not measured: needs e2e and a split in the run' });
  } else {
    const ratios = r.meta.sizes.map((s) => {
      const e = row(r, 'e2e', s);
      const b = row(r, best, s);
      return e === undefined || b === undefined ? Number.NaN : e.total.median / b.total.median;
    });
    const max = Math.max(...ratios.filter((x) => Number.isFinite(x)));
    out.push({
      claim: `full is up to 3× faster than e2e (download time; best configuration in this run: ${best})`,
      paper: 'up to 3×, depending on the size',
      verdict: `${best === 'full' ? (max >= 2.5 ? 'holds' : 'does not hold') : 'not measured (full is not in this run)'}: e2e / ${best} = ${ratios.map((x, i) => `${sizeLabel(r.meta.sizes[i] ?? 0)} ${x.toFixed(2)}×`).join(', ')}`,
    });
  }
  return out;
}

export function formatReport(r: Results, figures: { fig3: string; fig4: string }): string {
  const rtts = rttsOfResults(r);
  const ideal = idealTtfbMs(rtts);
  const m = r.meta;
  const link = (l: string): string => {
    const x = m.links[l];
    return x === undefined ? '-' : `${x.rttMs.toFixed(2)} ms (ping floor ${x.pingMinMs.toFixed(2)} ms)`;
  };
  const flagged = r.results.reduce((a, x) => a + x.flaggedRuns, 0);
  const total = r.results.reduce((a, x) => a + x.runs, 0);
  const notRun = CONFIGURATIONS.filter((c) => !m.configs.includes(c.name)).map((c): Configuration => c);
  const lines: string[] = [
    '# The paper\'s evaluation (§4, Figures 3 and 4) in the lab',
    '',
    `Run ${m.date} to ${m.finishedAt} on ${String(m.machine.cpus)} × ${m.machine.cpuModel}, Linux ${m.kernel}, Node ${m.node}, commit ${m.commit}; load average ${m.machine.loadAvg1m.toFixed(2)} at the end.`,
    `Congestion control: **${m.cc}** on every host (route \`congctl\`), initial window 10. ${String(m.runs)} runs per cell, interleaved across configurations; curl, a new connection per download; nginx in 'server'.`,
    '',
    `RTTs (configured, and the fastest of 5 pings): client–rc r1 = ${link('client-rc')}, rc–rs r2 = ${link('rc-rs')}, rs–server r3 = ${link('rs-server')}, internet ri = ${link('internet')}. Ideal (Fig. 1a): R = ${ideal.toFixed(1)} ms.`,
    '',
    '## Measured beside the model',
    '',
    'Δ = measured median − model. The model (docs/model.md) counts link delays only: what the hosts add (curl, nginx, the relays) is in Δ.',
    `A run is flagged when the emulator's p90 lateness on its links, times its traversals of them (2 per link per round trip, over the model's round trips), exceeds both 1% of the model's download time and 3 ms (0.25 ms a traversal over 2 round trips of 3 links): ${String(flagged)} of ${String(total)} runs were. Lateness grows with throughput (docs/lab.md): large files are flagged more often.`,
    '',
    formatTable(r),
    '',
    'ssh\'s model includes its wait for a whole first channel packet: from about 32 KB on, one more rc–rs round (docs/model.md).',
    '`split` runs the tcpsplit relays with every improvement off. The paper\'s "+TP" (a thread pool) is built into this design: nothing is created per connection, so there is no separate +TP row.',
    notRun.length === 0 ? '' : `Not in this run: ${notRun.map((c) => `\`${c.name}\`${c.needs === undefined ? '' : ` (needs ${c.needs})`}`).join(', ')}.`,
    '',
    '## Distance from the ideal (first byte, median − R)',
    '',
    '| configuration | ' + m.sizes.map(sizeLabel).join(' | ') + ' |',
    '|---|' + m.sizes.map(() => '---|').join(''),
    ...m.configs.map((c) => `| ${c} | ${m.sizes.map((s) => {
      const x = row(r, c, s);
      return x === undefined ? '-' : `+${(x.ttfb.median * 1000 - ideal).toFixed(1)} ms (${(x.ttfb.median * 1000 / ideal).toFixed(2)}× R)`;
    }).join(' | ')} |`),
    '',
    '## The paper\'s claims, checked against this run',
    '',
    `A measured saving agrees with the model's when within ${String(CLAIM_SHARE * 100)}% of it or ${String(CLAIM_FLOOR_MS)} ms.`,
    '',
    '| claim | the paper | this run |',
    '|---|---|---|',
    ...claims(r).map((c) => `| ${c.claim} | ${c.paper} | ${c.verdict} |`),
    '',
    'The paper gives no other numbers in its text: Figures 3 and 4 are bar charts of medians over 50 runs, with its RTTs (32.7, 215, 26 ms).',
    '',
    '## Figures',
    '',
    `![Fig. 3: time to first byte](${figures.fig3})`,
    '',
    `![Fig. 4: download time](${figures.fig4})`,
    '',
    '## The model\'s timelines for these RTTs (Fig. 1)',
    '',
    ...m.configs.flatMap((c) => ['```', `${c} (${configuration(c).paperName}): first byte ${timeline(rtts, configuration(c).path).ttfbMs.toFixed(2)} ms`, formatTimeline(timeline(rtts, configuration(c).path)), '```', '']),
  ];
  return lines.join('\n');
}
