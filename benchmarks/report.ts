import type { ConnectResult, ThroughputResult } from './load-tools.js';
import type { IdleMemoryResult } from './idle-memory.js';
import { NO_IDLE_MEMORY, type ProxyName } from './proxies.js';

/** The results of one run, their medians over repeats, and the table that puts them side by side. */

/** Taken while a load ran. */
export interface Measured {
  /** The proxy's CPU time over the wall time (1 = one core); undefined without a proxy. */
  proxyCpuCores: number | undefined;
  /** Share of all cores (0..1) that other processes on the machine used meanwhile. */
  foreignLoad: number;
}

export type ThroughputSample = ThroughputResult & Measured;
export type ConnectSample = ConnectResult & Measured & {
  /** Client connections the proxy still held open 1 s after wrk exited. */
  leftOpen: number | undefined;
};

export interface ThroughputSummary {
  /** Median over the quiet samples (see summarise), as are min, max and proxyCpuCores. */
  gbitPerSec: number;
  minGbitPerSec: number;
  maxGbitPerSec: number;
  proxyCpuCores: number | undefined;
  maxForeignLoad: number;
}

export interface ConnectSummary {
  /** Median over the quiet samples (see summarise), as are min, max and proxyCpuCores. */
  requestsPerSec: number;
  minRequestsPerSec: number;
  maxRequestsPerSec: number;
  proxyCpuCores: number | undefined;
  maxForeignLoad: number;
  /** Summed over all samples, quiet or not: an error in any run shows. */
  errors: number;
  socketErrors: ConnectResult['socketErrors'];
  non2xx: number;
  leftOpen: number | undefined;
}

export type TestKey = 'throughput' | 'connect' | 'idleMemory';

export interface RowResult {
  name: ProxyName;
  throughputSamples: ThroughputSample[];
  connectSamples: ConnectSample[];
  throughput?: ThroughputSummary;
  connect?: ConnectSummary;
  idleMemory?: IdleMemoryResult;
  /** What went wrong for this row, by test (the last failure); the other tests still ran. */
  failures: Partial<Record<TestKey, string>>;
}

export interface RunReport {
  date: string;
  machine: { cores: number; cpu: string; kernel: string };
  node: string;
  command: string;
  durationSeconds: number;
  repeat: number;
  idleConnections: number;
  rows: RowResult[];
  /** Share of all cores (0..1) other processes used in the second before the run. */
  foreignLoadBefore: number;
  /** A sample taken while others used more than this was measured again (up to twice). */
  maxForeignLoad: number;
}

const BASELINE: ProxyName = 'haproxy';

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] ?? NaN : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

function medianDefined(values: readonly (number | undefined)[]): number | undefined {
  const defined = values.filter((v): v is number => v !== undefined);
  return defined.length === 0 ? undefined : median(defined);
}

const sum = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0);

/**
 * The samples a median is taken over: those measured while others left the machine alone
 * (foreign load at most `maxForeign`), or all of them when there is none such. Every sample
 * stays in the JSON.
 */
function quiet<S extends Measured>(samples: readonly S[], maxForeign: number): S[] {
  const calm = samples.filter((s) => s.foreignLoad <= maxForeign);
  return calm.length > 0 ? calm : [...samples];
}

/** Fills in the medians (and errors summed over every sample) from the samples. */
export function summarise(row: RowResult, maxForeign: number): void {
  const t = quiet(row.throughputSamples, maxForeign);
  if (t.length > 0) {
    const g = t.map((s) => s.gbitPerSec);
    row.throughput = { gbitPerSec: median(g), minGbitPerSec: Math.min(...g), maxGbitPerSec: Math.max(...g), proxyCpuCores: medianDefined(t.map((s) => s.proxyCpuCores)), maxForeignLoad: Math.max(...t.map((s) => s.foreignLoad)) };
  }
  const all = row.connectSamples;
  const c = quiet(all, maxForeign);
  if (c.length > 0) {
    const r = c.map((s) => s.requestsPerSec);
    const left = all.map((s) => s.leftOpen).filter((v): v is number => v !== undefined);
    row.connect = {
      requestsPerSec: median(r),
      minRequestsPerSec: Math.min(...r),
      maxRequestsPerSec: Math.max(...r),
      proxyCpuCores: medianDefined(c.map((s) => s.proxyCpuCores)),
      maxForeignLoad: Math.max(...c.map((s) => s.foreignLoad)),
      errors: sum(all.map((s) => s.errors)),
      socketErrors: {
        connect: sum(all.map((s) => s.socketErrors.connect)),
        read: sum(all.map((s) => s.socketErrors.read)),
        write: sum(all.map((s) => s.socketErrors.write)),
        timeout: sum(all.map((s) => s.socketErrors.timeout)),
      },
      non2xx: sum(all.map((s) => s.non2xx)),
      leftOpen: left.length === 0 ? undefined : sum(left),
    };
  }
}

function ratio(value: number | undefined, base: number | undefined): string {
  if (value === undefined || base === undefined || base === 0) return '';
  return `${(value / base).toFixed(2)}×`;
}

function cpu(cores: number | undefined): string {
  return cores === undefined ? '' : cores.toFixed(2);
}

function missing(row: RowResult, test: TestKey, absent = '-'): string {
  return row.failures[test] === undefined ? absent : 'FAILED';
}

export function formatTable(report: RunReport): string {
  const base = report.rows.find((r) => r.name === BASELINE);
  const ranged = report.repeat > 1;
  const header = [
    'proxy', 'Gbit/s', ...(ranged ? ['(min-max)'] : []), `× ${BASELINE}`, 'proxy CPU',
    'conn/s', ...(ranged ? ['(min-max)'] : []), `× ${BASELINE}`, 'errors', 'proxy CPU',
    'KB/idle conn', `× ${BASELINE}`, 'others',
  ];
  const lines: string[][] = [header];
  for (const row of report.rows) {
    const t = row.throughput;
    const c = row.connect;
    const m = row.idleMemory;
    const isBase = row.name === BASELINE;
    lines.push([
      row.name,
      t === undefined ? missing(row, 'throughput') : t.gbitPerSec.toFixed(2),
      ...(ranged ? [t === undefined ? '' : `${t.minGbitPerSec.toFixed(1)}-${t.maxGbitPerSec.toFixed(1)}`] : []),
      isBase && t !== undefined ? '1.00×' : ratio(t?.gbitPerSec, base?.throughput?.gbitPerSec),
      cpu(t?.proxyCpuCores),
      c === undefined ? missing(row, 'connect') : Math.round(c.requestsPerSec).toString(),
      ...(ranged ? [c === undefined ? '' : `${Math.round(c.minRequestsPerSec)}-${Math.round(c.maxRequestsPerSec)}`] : []),
      isBase && c !== undefined ? '1.00×' : ratio(c?.requestsPerSec, base?.connect?.requestsPerSec),
      c === undefined ? '' : errorSummary(c),
      cpu(c?.proxyCpuCores),
      m === undefined ? missing(row, 'idleMemory', NO_IDLE_MEMORY.includes(row.name) ? 'n/a' : '-') : m.kbPerConnection.toFixed(1),
      isBase && m !== undefined ? '1.00×' : ratio(m?.kbPerConnection, base?.idleMemory?.kbPerConnection),
      t === undefined && c === undefined ? '' : pct(Math.max(t?.maxForeignLoad ?? 0, c?.maxForeignLoad ?? 0)),
    ]);
  }
  const widths = header.map((_, i) => Math.max(...lines.map((l) => (l[i] ?? '').length)));
  const out = lines.map((l) => l.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  '));
  out.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  const lingering = report.rows.flatMap((r) => (r.connect?.leftOpen ? [`  ${r.name}: ${r.connect.leftOpen} client connections still open 1 s after wrk exited (all runs)`] : []));
  const failures = report.rows.flatMap((r) => Object.entries(r.failures).map(([test, msg]) => `  ${r.name} ${test}: ${msg}`));
  const w1 = report.rows.find((r) => r.name === 'tcpsplit-w1')?.connect?.requestsPerSec;
  const w2 = report.rows.find((r) => r.name === 'tcpsplit-w2')?.connect?.requestsPerSec;
  const scaling = w1 === undefined || w2 === undefined ? [] : [
    '', `workers: tcpsplit --workers 2 makes ${Math.round(w2)} new connections/s, --workers 1 ${Math.round(w1)}: ${ratio(w2, w1)} `
      + `(on ${report.machine.cores} cores shared with wrk and nginx)`,
  ];
  return [
    `tcpsplit relay vs peers, ${report.date}: ${report.machine.cores} cores (${report.machine.cpu}), Linux ${report.machine.kernel}, Node ${report.node}`,
    `iperf3 -t ${report.durationSeconds} -P 1 | wrk -c 50 -t 2 -d ${report.durationSeconds}s -H 'Connection: close' against nginx | ${report.idleConnections} idle connections`,
    ...(ranged ? [`Throughput and conn/s: median of ${report.repeat} runs, lowest-highest in (min-max); errors summed over all runs.`] : []),
    `"others": the most CPU other processes took (share of all cores) during the runs counted; a run above ${pct(report.maxForeignLoad)} was`,
    `measured again, up to twice, and counts only if no quieter run of that row exists (all runs are in the JSON).`,
    `"proxy CPU" is the proxy's CPU time over the test's wall time (1.00 = one core busy).`,
    '',
    ...out,
    ...scaling,
    ...(lingering.length > 0 ? ['', 'connections left open:', ...lingering] : []),
    ...(failures.length > 0 ? ['', 'failures:', ...failures] : []),
    '',
  ].join('\n');
}

const pct = (x: number): string => `${Math.round(x * 100)}%`;

function errorSummary(c: ConnectSummary): string {
  if (c.errors === 0) return '0';
  const parts = Object.entries(c.socketErrors).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`);
  if (c.non2xx > 0) parts.push(`non-2xx ${c.non2xx}`);
  return parts.join(', ');
}
