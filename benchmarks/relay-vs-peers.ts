#!/usr/bin/env node
/**
 * tcpsplit relay beside haproxy and socat, one relay hop each on loopback: throughput
 * (iperf3), new connections per second (wrk with Connection: close against nginx) and
 * memory per idle split connection. Starts all its own servers and peers, and stops
 * them at exit. See benchmarks/README.md.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, release } from 'node:os';
import { parseArgs } from 'node:util';
import { HoldServer, startIperf3Server, startNginx, type Backend } from './backends.js';
import { measureIdleMemory } from './idle-memory.js';
import { runIperf3, runWrk } from './load-tools.js';
import { ForeignLoadMeter } from './foreign-load.js';
import { ProcessGroup } from './process-group.js';
import { countOpenConnections, freePort, readCpuSeconds } from './proc-stats.js';
import { NO_IDLE_MEMORY, PROXY_DESCRIPTIONS, PROXY_NAMES, RELAY_MAIN, startProxy, stopProxy, type ProxyInstance, type ProxyName } from './proxies.js';
import { formatTable, summarise, type Measured, type RowResult, type RunReport } from './report.js';

const TESTS = ['throughput', 'connect', 'memory'] as const;
type TestName = (typeof TESTS)[number];

const MAX_IDLE = 6000; // 2 fds per connection here and 2 in the proxy, under the 20,000 open-files limit
const PAUSE_MS = 1000; // between runs: lets TIME_WAIT and CPU settle
const LINGER_CHECK_MS = 1000;
const CONTENDED_RETRIES = 2;

const HELP = `Usage: node dist/benchmarks/relay-vs-peers.js [options]

Measures, through one relay hop on 127.0.0.1, side by side:
  throughput   iperf3 -t SECONDS -P 1 through each proxy (Gbit/s at the receiver)
  connect      new connections per second: wrk -c 50 -t 2 -H 'Connection: close'
               against nginx through each proxy (requests/s, errors)
  memory       proxy VmRSS growth per idle split connection, over N connections

Rows:
${PROXY_NAMES.map((n) => `  ${n.padEnd(15)}${PROXY_DESCRIPTIONS[n]}`).join('\n')}

Options:
  --duration SECONDS  length of each iperf3 and wrk run (default 5)
  --only NAME,...     only these rows (default: all)
  --tests NAME,...    only these tests: ${TESTS.join(', ')} (default: all)
  --repeat N          run throughput and connect N times, interleaved, and report
                      the median (default 1, at most 20)
  --max-foreign PCT   measure again (up to ${CONTENDED_RETRIES} times) when other processes used
                      more than PCT% of the machine during a run (default 15)
  --idle N            idle connections for the memory test (default 2000, at most ${MAX_IDLE})
  --json PATH         also write the results as JSON to PATH
  --table-from PATH   measure nothing: print the table of an earlier --json file
  -h, --help          this text

Needs haproxy, socat, iperf3, wrk and nginx (bash scripts/setup.sh installs them) and
a built relay (npx tsc -p tsconfig.json). Progress goes to stderr, the table to stdout.
Example: npm run bench -- --duration 10 --only haproxy,tcpsplit --json /tmp/bench.json
`;

interface Options {
  durationSeconds: number;
  rows: ProxyName[];
  tests: TestName[];
  repeat: number;
  maxForeign: number;
  idle: number;
  json: string | undefined;
  tableFrom: string | undefined;
}

function fail(message: string): never {
  process.stderr.write(`relay-vs-peers: ${message}\n`);
  process.exit(2);
}

function pickList<T extends string>(value: string | undefined, all: readonly T[], what: string): T[] {
  if (value === undefined) return [...all];
  const names = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const n of names) if (!(all as readonly string[]).includes(n)) fail(`unknown ${what} '${n}'; known: ${all.join(', ')}`);
  // Keep the canonical order, so tables of different runs line up.
  return all.filter((n) => names.includes(n));
}

function parseOptions(argv: string[]): Options {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        duration: { type: 'string' },
        only: { type: 'string' },
        tests: { type: 'string' },
        repeat: { type: 'string' },
        'max-foreign': { type: 'string' },
        idle: { type: 'string' },
        json: { type: 'string' },
        'table-from': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    fail(`${(err as Error).message}\n\n${HELP}`);
  }
  if (values.help === true) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const durationSeconds = Number(values.duration ?? 5);
  if (!Number.isInteger(durationSeconds) || durationSeconds < 1 || durationSeconds > 600) fail('--duration must be a whole number of seconds, 1 to 600');
  const repeat = Number(values.repeat ?? 1);
  if (!Number.isInteger(repeat) || repeat < 1 || repeat > 20) fail('--repeat must be 1 to 20');
  const maxForeignPct = Number(values['max-foreign'] ?? 15);
  if (!Number.isFinite(maxForeignPct) || maxForeignPct < 0 || maxForeignPct > 100) fail('--max-foreign must be 0 to 100');
  const idle = Number(values.idle ?? 2000);
  if (!Number.isInteger(idle) || idle < 1 || idle > MAX_IDLE) fail(`--idle must be 1 to ${MAX_IDLE}`);
  const rows = pickList(values.only, PROXY_NAMES, 'row');
  const tests = pickList(values.tests, TESTS, 'test');
  if (rows.length === 0 || tests.length === 0) fail('nothing to run');
  return { durationSeconds, rows, tests, repeat, maxForeign: maxForeignPct / 100, idle, json: values.json, tableFrom: values['table-from'] };
}

function progress(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}


function checkTools(opts: Options): void {
  const needed = new Set<string>();
  if (opts.tests.includes('throughput')) needed.add('iperf3');
  if (opts.tests.includes('connect')) { needed.add('wrk'); needed.add('nginx'); }
  if (opts.rows.some((r) => r.startsWith('haproxy'))) needed.add('haproxy');
  if (opts.rows.includes('socat')) needed.add('socat');
  const missing = [...needed].filter((tool) => {
    try {
      execFileSync('sh', ['-c', `command -v ${tool} || test -x /usr/sbin/${tool}`], { stdio: 'ignore' });
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length > 0) fail(`missing: ${missing.join(', ')}; run: bash scripts/setup.sh`);
  if (opts.rows.some((r) => r.startsWith('tcpsplit')) && !existsSync(RELAY_MAIN)) {
    fail(`no relay at ${RELAY_MAIN}; build first: npx tsc -p tsconfig.json`);
  }
}

async function measure<T>(group: ProcessGroup, proxy: ProxyInstance, work: () => Promise<T>): Promise<T & Measured> {
  const pid = proxy.proc?.pid;
  const cpu0 = pid === undefined ? 0 : readCpuSeconds(pid);
  const meter = new ForeignLoadMeter(() => group.groups());
  const t0 = performance.now();
  const result = await work();
  const wallSeconds = (performance.now() - t0) / 1000;
  const foreignLoad = meter.read();
  const proxyCpuCores = pid === undefined ? undefined : (readCpuSeconds(pid) - cpu0) / wallSeconds;
  return { ...result, proxyCpuCores, foreignLoad };
}

/**
 * Runs `once` until other processes left the machine alone enough (foreign load at most
 * --max-foreign), at most 1 + CONTENDED_RETRIES times; the last try counts either way.
 */
async function withRetries<S extends Measured>(once: () => Promise<S>, opts: Options): Promise<S> {
  for (let attempt = 0; ; attempt++) {
    const sample = await once();
    if (sample.foreignLoad <= opts.maxForeign || attempt >= CONTENDED_RETRIES) return sample;
    progress(`  other processes used ${Math.round(sample.foreignLoad * 100)}% of the machine meanwhile: measuring again`);
    await sleep(PAUSE_MS);
  }
}

const pct = (x: number): string => `${Math.round(x * 100)}%`;

async function runThroughput(group: ProcessGroup, opts: Options, rows: Map<ProxyName, RowResult>, round: string): Promise<void> {
  const dir = group.tempDir('iperf3');
  for (const name of opts.rows) {
    const row = rows.get(name);
    if (row === undefined) continue;
    progress(`throughput${round}: ${name} (iperf3, ${opts.durationSeconds} s)`);
    let proxy: ProxyInstance | undefined;
    try {
      // The proxy first: iperf3 -s -1 must see no connection but the test's own.
      const serverPort = await freePort();
      const p = proxy = await startProxy(group, name, serverPort);
      const sample = await withRetries(async () => {
        const server = await startIperf3Server(group, dir, serverPort);
        try {
          return await measure(group, p, () => runIperf3(group, dir, p.port, opts.durationSeconds));
        } finally {
          await group.stop(server.proc);
        }
      }, opts);
      row.throughputSamples.push(sample);
      progress(`  ${sample.gbitPerSec.toFixed(2)} Gbit/s (proxy CPU ${sample.proxyCpuCores?.toFixed(2) ?? '-'}, others ${pct(sample.foreignLoad)})`);
    } catch (err) {
      row.failures.throughput = (err as Error).message;
      progress(`  failed: ${row.failures.throughput}`);
    } finally {
      if (proxy !== undefined) await stopProxy(group, proxy);
    }
    await sleep(PAUSE_MS);
  }
}

async function runConnect(group: ProcessGroup, opts: Options, rows: Map<ProxyName, RowResult>, nginx: Backend, round: string): Promise<void> {
  const dir = group.tempDir('wrk');
  for (const name of opts.rows) {
    const row = rows.get(name);
    if (row === undefined) continue;
    progress(`new connections${round}: ${name} (wrk -c 50 -t 2, Connection: close, ${opts.durationSeconds} s)`);
    let proxy: ProxyInstance | undefined;
    try {
      const p = proxy = await startProxy(group, name, nginx.port);
      const sample = await withRetries(async () => {
        const result = await measure(group, p, () => runWrk(group, dir, p.port, opts.durationSeconds));
        // wrk has exited and closed every socket: a proxy still holding client connections
        // a moment later has lost a FIN or leaks.
        await sleep(LINGER_CHECK_MS);
        return { ...result, leftOpen: name === 'direct' ? undefined : countOpenConnections(p.port) };
      }, opts);
      row.connectSamples.push(sample);
      const left = sample.leftOpen ? `, ${sample.leftOpen} connections still open after wrk exited` : '';
      progress(`  ${Math.round(sample.requestsPerSec)} requests/s, ${sample.errors} errors${left} (proxy CPU ${sample.proxyCpuCores?.toFixed(2) ?? '-'}, others ${pct(sample.foreignLoad)})`);
    } catch (err) {
      row.failures.connect = (err as Error).message;
      progress(`  failed: ${row.failures.connect}`);
    } finally {
      if (proxy !== undefined) await stopProxy(group, proxy);
    }
    await sleep(PAUSE_MS);
  }
}

async function runMemory(group: ProcessGroup, opts: Options, rows: Map<ProxyName, RowResult>): Promise<void> {
  const hold = new HoldServer();
  await hold.listen();
  try {
    for (const name of opts.rows) {
      const row = rows.get(name);
      if (row === undefined || NO_IDLE_MEMORY.includes(name)) continue;
      progress(`idle memory: ${name} (${opts.idle} connections)`);
      let proxy: ProxyInstance | undefined;
      try {
        proxy = await startProxy(group, name, hold.port);
        if (proxy.proc === undefined) continue;
        row.idleMemory = await measureIdleMemory(proxy.proc.pid, proxy.port, hold, opts.idle);
        const m = row.idleMemory;
        progress(`  RSS ${m.rssBeforeKb} -> ${m.rssAfterKb} KB: ${m.kbPerConnection.toFixed(1)} KB per connection`);
      } catch (err) {
        row.failures.idleMemory = (err as Error).message;
        progress(`  failed: ${row.failures.idleMemory}`);
      } finally {
        if (proxy !== undefined) await stopProxy(group, proxy);
      }
    }
  } finally {
    await hold.close();
  }
}

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  if (opts.tableFrom !== undefined) {
    const saved = JSON.parse(readFileSync(opts.tableFrom, 'utf8')) as RunReport;
    for (const row of saved.rows) summarise(row, saved.maxForeignLoad);
    process.stdout.write(formatTable(saved));
    return 0;
  }
  checkTools(opts);
  const group = new ProcessGroup();
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    progress(`${signal}: stopping everything this run started`);
    void group.cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => { group.cleanupSync(); });

  const rows = new Map<ProxyName, RowResult>(opts.rows.map((name) => [name, { name, throughputSamples: [], connectSamples: [], failures: {} }]));
  const report: RunReport = {
    date: new Date().toISOString(),
    machine: { cores: availableParallelism(), cpu: cpus()[0]?.model.trim() ?? 'unknown', kernel: release() },
    node: process.version,
    command: ['node', 'dist/benchmarks/relay-vs-peers.js', ...process.argv.slice(2)].join(' '),
    durationSeconds: opts.durationSeconds,
    repeat: opts.repeat,
    idleConnections: opts.idle,
    rows: [...rows.values()],
    foreignLoadBefore: 0,
    maxForeignLoad: opts.maxForeign,
  };
  const before = new ForeignLoadMeter(() => group.groups());
  await sleep(PAUSE_MS);
  report.foreignLoadBefore = before.read();
  if (report.foreignLoadBefore > opts.maxForeign) progress(`warning: other processes use ${pct(report.foreignLoadBefore)} of the machine; numbers will be low and noisy`);
  try {
    // Rounds interleave the rows, so a slow phase of the machine hits every row alike.
    for (let i = 1; i <= opts.repeat; i++) {
      const round = opts.repeat === 1 ? '' : ` [${i}/${opts.repeat}]`;
      if (opts.tests.includes('throughput')) await runThroughput(group, opts, rows, round);
    }
    if (opts.tests.includes('connect')) {
      const nginx = await startNginx(group);
      try {
        for (let i = 1; i <= opts.repeat; i++) {
          await runConnect(group, opts, rows, nginx, opts.repeat === 1 ? '' : ` [${i}/${opts.repeat}]`);
        }
      } finally {
        await group.stop(nginx.proc);
      }
    }
    if (opts.tests.includes('memory')) await runMemory(group, opts, rows);
  } finally {
    await group.cleanup();
  }
  for (const row of rows.values()) summarise(row, opts.maxForeign);
  process.stdout.write(formatTable(report));
  if (opts.json !== undefined) {
    writeFileSync(opts.json, `${JSON.stringify(report, null, 2)}\n`);
    progress(`results written to ${opts.json}`);
  }
  return report.rows.some((r) => Object.keys(r.failures).length > 0) ? 1 : 0;
}

main().then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    process.stderr.write(`relay-vs-peers: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
