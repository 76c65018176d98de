/**
 * `tcpsplit lab paper`: the paper's §4 evaluation in the lab, beside the RTT model
 * (src/paper). Writes results.json, samples.json, report.md and Figures 3 and 4.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { LabConfigError, LabError } from '../errors.js';
import { applyLinkFlag, scaleDelays } from '../lab/link-config.js';
import { verifyPrefix } from '../lab/lab-state.js';
import { loadProfile } from '../lab/profile-file.js';
import { CONFIGURATIONS, isConfigName, runnableConfigs, type ConfigName, type Configuration } from '../paper/configurations.js';
import { CONGESTION_CONTROLS, type CongestionControl } from '../paper/congestion.js';
import { renderFigure } from '../paper/figures.js';
import { formatReport, formatTable } from '../paper/report.js';
import { summarize, validateResults, type Results } from '../paper/results.js';
import { runPaper, type PaperRun, type ProgressEvent } from '../paper/runner.js';
import { PAPER_SIZES, QUICK_SIZES, parseSizes, sizeLabel, type FileSize } from '../paper/sizes.js';

export const PAPER_PREFIX = 'tspaper';
const QUICK_DELAY_SCALE = 0.1;

const PAPER_HELP = `tcpsplit lab paper: the paper's evaluation (section 4, Figures 3 and 4) in the lab,
beside an RTT model of every configuration (docs/model.md)

Builds the lab (its own, prefix ${PAPER_PREFIX}), makes CUBIC every host's congestion
control, serves ${PAPER_SIZES.join(', ')} from nginx in 'server', and downloads each file
with curl from 'client', a new connection each time, runs interleaved across the
configurations:

${CONFIGURATIONS.map((c: Configuration) => `  ${c.name.padEnd(12)} ${c.description}${c.needs === undefined ? '' : `\n  ${''.padEnd(12)} (not yet: needs ${c.needs})`}`).join('\n')}

Options:
  --quick               RTTs x ${String(QUICK_DELAY_SCALE)}, 3 runs, sizes ${QUICK_SIZES.join(',')}, every runnable configuration
  --runs N              downloads per configuration and size (default 10; the paper: 50)
  --sizes LIST          e.g. 10kb,1mb (KB, MB: 1024-based, as the paper's files)
  --configs LIST        a subset of: ${CONFIGURATIONS.map((c) => c.name).join(', ')}
  --profile NAME|FILE   paper (default) or none or a file, as for 'lab up'
  --link LINK:SETTINGS  override one link, as for 'lab up'; repeatable
  --delay-scale F       multiply every delay by F
  --cc cubic|bbr        congestion control on every host (default cubic, as the paper's hosts)
  --out DIR             default ./paper-results/<timestamp>
  --prefix P            lab name prefix (default ${PAPER_PREFIX})
  --render DIR          rewrite DIR's report.md and figures from its results.json (no lab, no root)
  -h, --help

Writes DIR/results.json (the shape scripts rely on; times in seconds), samples.json (every
download), report.md (tables beside the model, the paper's claims with verdicts) and
fig3-ttfb.{svg,png}, fig4-download.{svg,png}. Needs root.
`;

interface PaperArgs {
  readonly runs: number;
  readonly sizes: FileSize[];
  readonly configs: ConfigName[];
  readonly cc: CongestionControl;
  readonly prefix: string;
  readonly out: string;
  readonly delayScale: number;
  readonly profileName: string;
  readonly linkFlags: readonly string[];
}

export function parsePaperArgs(args: string[], now = new Date()): PaperArgs | 'help' | { readonly render: string } {
  let values;
  try {
    ({ values } = parseArgs({
      args, strict: true, allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' }, quick: { type: 'boolean' }, runs: { type: 'string' }, sizes: { type: 'string' },
        configs: { type: 'string' }, profile: { type: 'string' }, link: { type: 'string', multiple: true },
        'delay-scale': { type: 'string' }, cc: { type: 'string' }, out: { type: 'string' }, prefix: { type: 'string' },
        render: { type: 'string' },
      },
    }));
  } catch (err) {
    throw new LabConfigError(`${err instanceof Error ? err.message : String(err)} (see tcpsplit lab paper --help)`);
  }
  if (values.help === true) return 'help';
  if (values.render !== undefined) return { render: resolve(values.render) };
  const quick = values.quick === true;
  const runsText = values.runs ?? (quick ? '3' : '10');
  const runs = Number(runsText);
  if (!/^\d+$/.test(runsText) || runs < 1 || runs > 1000) throw new LabConfigError(`--runs '${runsText}': expected a whole number from 1 to 1000`);
  const sizes = parseSizes(values.sizes ?? (quick ? QUICK_SIZES : PAPER_SIZES).join(','));
  let configs: ConfigName[];
  if (values.configs === undefined) {
    configs = runnableConfigs();
  } else {
    configs = [];
    for (const name of values.configs.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
      if (!isConfigName(name)) throw new LabConfigError(`--configs: unknown configuration '${name}' (known: ${CONFIGURATIONS.map((c) => c.name).join(', ')})`);
      const needs = (CONFIGURATIONS.find((c) => c.name === name) as Configuration | undefined)?.needs;
      if (needs !== undefined) throw new LabConfigError(`--configs: '${name}' cannot run yet: it needs ${needs}. Runnable now: ${runnableConfigs().join(', ')}`);
      if (!configs.includes(name)) configs.push(name);
    }
    if (configs.length === 0) throw new LabConfigError('--configs: empty list');
    // The table's order, so that figures and reports read the same every time.
    configs = CONFIGURATIONS.map((c) => c.name).filter((n) => configs.includes(n));
  }
  const cc = values.cc ?? 'cubic';
  if (!(CONGESTION_CONTROLS as readonly string[]).includes(cc)) throw new LabConfigError(`--cc '${cc}': expected ${CONGESTION_CONTROLS.join(' or ')}`);
  const scaleText = values['delay-scale'];
  if (scaleText !== undefined && !/^\d+(\.\d+)?$/.test(scaleText)) throw new LabConfigError(`--delay-scale '${scaleText}' is not a number`);
  const stamp = now.toISOString().replace(/[:]/g, '').replace(/\.\d+Z$/, 'Z');
  return {
    runs, sizes, configs, cc: cc as CongestionControl,
    prefix: verifyPrefix(values.prefix ?? PAPER_PREFIX),
    out: resolve(values.out ?? join('paper-results', stamp)),
    delayScale: scaleText === undefined ? (quick ? QUICK_DELAY_SCALE : 1) : Number(scaleText),
    profileName: values.profile ?? 'paper',
    linkFlags: values.link ?? [],
  };
}

/** Writes results.json, samples.json, the figures and report.md into `dir`. */
export async function writeOutputs(dir: string, run: PaperRun, results: Results): Promise<void> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(join(dir, 'samples.json'), `${JSON.stringify({ meta: results.meta, samples: run.samples }, null, 2)}\n`);
  await renderOutputs(dir, results);
}

/** The figures and report.md from `results` (also `--render DIR`, from a run's results.json). */
export async function renderOutputs(dir: string, results: Results): Promise<void> {
  const fig3 = await renderFigure(results, 'ttfb');
  const fig4 = await renderFigure(results, 'total');
  writeFileSync(join(dir, 'fig3-ttfb.svg'), fig3.svg);
  writeFileSync(join(dir, 'fig3-ttfb.png'), fig3.png);
  writeFileSync(join(dir, 'fig4-download.svg'), fig4.svg);
  writeFileSync(join(dir, 'fig4-download.png'), fig4.png);
  writeFileSync(join(dir, 'report.md'), formatReport(results, { fig3: 'fig3-ttfb.svg', fig4: 'fig4-download.svg' }));
}

function progressSink(total: () => number): { onProgress: (e: ProgressEvent) => void; stop: () => void } {
  const started = Date.now();
  const stamp = (): string => `[paper ${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s]`;
  if (process.stdout.isTTY) {
    const bar = new cliProgress.SingleBar({
      format: 'downloads {bar} {value}/{total} | elapsed {duration_formatted} | left ~{eta_formatted} | {last}',
      hideCursor: true, etaBuffer: 20, stream: process.stdout,
    }, cliProgress.Presets.shades_classic);
    let running = false;
    return {
      onProgress: (e) => {
        if (e.kind === 'setup') { process.stdout.write(`${stamp()} ${e.message}\n`); return; }
        if (!running) { bar.start(total(), 0, { last: '' }); running = true; }
        const s = e.sample;
        bar.update(e.done, { last: `${s.config} ${sizeLabel(s.sizeBytes)}: ${(s.ttfb * 1000).toFixed(1)} / ${(s.total * 1000).toFixed(1)} ms${s.flagged ? ' (late)' : ''}` });
      },
      stop: () => { if (running) bar.stop(); },
    };
  }
  return {
    onProgress: (e) => {
      if (e.kind === 'setup') { process.stderr.write(`${stamp()} ${e.message}\n`); return; }
      const s = e.sample;
      const left = e.done === 0 ? 0 : ((Date.now() - started) / e.done) * (e.total - e.done) / 1000;
      process.stderr.write(`${stamp()} ${String(e.done)}/${String(e.total)} ${s.config} ${sizeLabel(s.sizeBytes)} run ${String(s.run)}: first byte ${(s.ttfb * 1000).toFixed(1)} ms, done ${(s.total * 1000).toFixed(1)} ms${s.flagged ? `, FLAGGED (lateness p90 ${s.lateP90Ms.toFixed(2)}, p99 ${s.lateP99Ms.toFixed(2)} ms)` : ''}; ~${left.toFixed(0)} s left\n`);
    },
    stop: () => undefined,
  };
}

export async function runPaperCommand(args: string[]): Promise<number> {
  const parsed = parsePaperArgs(args);
  if (parsed === 'help') { process.stdout.write(PAPER_HELP); return 0; }
  if ('render' in parsed) {
    const results = JSON.parse(readFileSync(join(parsed.render, 'results.json'), 'utf8')) as unknown;
    const errors = validateResults(results);
    if (errors.length > 0) throw new LabConfigError(`--render: ${parsed.render}/results.json does not fit the shape: ${errors.slice(0, 5).join('; ')}`);
    await renderOutputs(parsed.render, results as Results);
    process.stdout.write(`${formatTable(results as Results)}\n\nRewrote ${parsed.render}/: report.md, fig3-ttfb.{svg,png}, fig4-download.{svg,png}\n`);
    return 0;
  }
  let profile = loadProfile(parsed.profileName);
  if (parsed.delayScale !== 1) profile = scaleDelays(profile, parsed.delayScale);
  for (const flag of parsed.linkFlags) profile = applyLinkFlag(profile, flag);
  const total = parsed.runs * parsed.sizes.length * parsed.configs.length;
  const sink = progressSink(() => total);
  // Ctrl-C stops after the download under way, and the lab, relays, sshd and nginx are taken down.
  const abort = new AbortController();
  const onSignal = (): void => { abort.abort(new LabError('interrupted: the lab is taken down, nothing is written')); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let run: PaperRun;
  try {
    run = await runPaper({
      profile, configs: parsed.configs, sizes: parsed.sizes, runs: parsed.runs, cc: parsed.cc, prefix: parsed.prefix,
      onProgress: sink.onProgress, signal: abort.signal,
    });
  } finally {
    sink.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  const results = summarize(run, parsed.cc, parsed.runs);
  await writeOutputs(parsed.out, run, results);
  process.stdout.write(`\n${formatTable(results)}\n\nWrote ${parsed.out}/: results.json, samples.json, report.md, fig3-ttfb.{svg,png}, fig4-download.{svg,png}\n`);
  return 0;
}
