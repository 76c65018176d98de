/**
 * What the early-SYN queue costs a SYN: the client's handshake time (SYN sent to SYN-ACK
 * received) on loopback, with and without tcpsplit's NFQUEUE rule, side by side in one run.
 *
 *   node dist/benchmarks/early-syn-queue.js [--rounds 5] [--connects 100] [--json PATH]
 *
 * Needs root: it makes a network namespace of its own (tse-bench-<pid>, deleted at exit,
 * also on failure or Ctrl-C), and runs itself inside it. Rows, interleaved round by round:
 * - no rule:        nothing queued
 * - bypass:         the rule installed, no reader bound (--queue-bypass lets SYNs through)
 * - reader thread:  the rule + SynCapture (a worker_thread with a synchronous ppoll loop,
 *                   ACCEPT verdict at once, then the event posted to the main thread)
 * - reader thread, SCHED_FIFO: the same with `realtime: true`
 *
 * Two measures per connect, both reported as median / p90 / p99 in microseconds:
 * - handshake: tcpi_rtt read from the client socket right after connect(): the kernel's
 *   one RTT sample of the handshake, free of event-loop delay. This is the number the
 *   issue asks for ("SYN to SYN-ACK").
 * - connect(): wall time from net.connect() to 'connect' in Node (includes the loop).
 * "added" is the row's median minus the no-rule median. Connects are sequential (one at
 * a time), so the queue is never contended; the client, listener and reader share one
 * process, as a relay's listener and reader do.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { SynCapture } from '../src/intercept/syn-capture.js';
import { SynRules } from '../src/intercept/syn-rules.js';
import { socketFd } from '../src/sys/tcp-socket.js';
import { tcpRtt } from '../src/sys/tcp-info.js';

const ROWS = ['no rule', 'bypass', 'reader thread', 'reader thread, SCHED_FIFO'] as const;
type Row = (typeof ROWS)[number];
const QUEUE = 42;

interface Args { rounds: number; connects: number; json: string | undefined; inner: boolean }

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { rounds: 5, connects: 100, json: undefined, inner: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--inner') args.inner = true;
    else if (a === '--rounds' && v !== undefined) { args.rounds = Number(v); i++; }
    else if (a === '--connects' && v !== undefined) { args.connects = Number(v); i++; }
    else if (a === '--json' && v !== undefined) { args.json = v; i++; }
    else {
      process.stderr.write('usage: node dist/benchmarks/early-syn-queue.js [--rounds N] [--connects N] [--json PATH]\n');
      process.exit(2);
    }
  }
  return args;
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

interface Sample { handshakeUs: number; connectUs: number }

function connectOnce(port: number): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const c = net.connect({ host: '127.0.0.1', port });
    c.once('error', reject);
    c.once('connect', () => {
      const connectUs = Number(process.hrtime.bigint() - start) / 1e3;
      const fd = socketFd(c);
      const handshakeUs = fd === undefined ? NaN : tcpRtt(fd).rttUs;
      c.destroy();
      resolve({ handshakeUs, connectUs });
    });
  });
}

async function inner(args: Args): Promise<void> {
  const server = net.createServer((s) => { s.on('error', () => undefined); s.destroy(); });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  const samples = new Map<Row, Sample[]>(ROWS.map((r) => [r, []]));
  let captured = 0;
  for (let round = 0; round < args.rounds; round++) {
    // Rotate the order each round so that no row always runs first (warm caches) or last.
    const order = ROWS.map((_, i) => ROWS[(i + round) % ROWS.length] ?? 'no rule');
    for (const row of order) {
      const rules = row === 'no rule' ? undefined
        : await SynRules.install({ instance: 'bench', workers: 1, queueBase: QUEUE, capture: [{ cidr: '127.0.0.1/32', ports: { first: port, last: port } }] });
      const capture = row === 'no rule' || row === 'bypass' ? undefined
        : await SynCapture.start({ queueNum: QUEUE, realtime: row !== 'reader thread', onSyn: () => { captured++; } });
      try {
        for (let i = 0; i < 10; i++) await connectOnce(port); // warm-up
        const into = samples.get(row) ?? [];
        for (let i = 0; i < args.connects; i++) into.push(await connectOnce(port));
      } finally {
        await capture?.stop();
        await rules?.close();
      }
    }
    process.stderr.write(`round ${round + 1}/${args.rounds} done\n`);
  }
  server.close();
  const summary = ROWS.map((row) => {
    const s = samples.get(row) ?? [];
    const hs = s.map((x) => x.handshakeUs).sort((a, b) => a - b);
    const cs = s.map((x) => x.connectUs).sort((a, b) => a - b);
    return {
      row, n: s.length,
      handshakeUs: { p50: quantile(hs, 0.5), p90: quantile(hs, 0.9), p99: quantile(hs, 0.99) },
      connectUs: { p50: quantile(cs, 0.5), p90: quantile(cs, 0.9), p99: quantile(cs, 0.99) },
    };
  });
  process.stdout.write(`${JSON.stringify({ summary, captured })}\n`);
}

type Summary = { row: Row; n: number; handshakeUs: Record<'p50' | 'p90' | 'p99', number>; connectUs: Record<'p50' | 'p90' | 'p99', number> }[];

function table(summary: Summary): string {
  const base = summary[0];
  const f = (n: number): string => n.toFixed(0).padStart(6);
  const lines = [
    '| row | n | handshake p50 / p90 / p99 (us) | added p50 | connect() p50 / p90 / p99 (us) | added p50 |',
    '|---|---|---|---|---|---|',
  ];
  for (const s of summary) {
    lines.push(`| ${s.row} | ${s.n} | ${f(s.handshakeUs.p50)} / ${f(s.handshakeUs.p90)} / ${f(s.handshakeUs.p99)} | ${f(s.handshakeUs.p50 - (base?.handshakeUs.p50 ?? 0))} `
      + `| ${f(s.connectUs.p50)} / ${f(s.connectUs.p90)} / ${f(s.connectUs.p99)} | ${f(s.connectUs.p50 - (base?.connectUs.p50 ?? 0))} |`);
  }
  return lines.join('\n');
}

function outer(args: Args): void {
  if (process.getuid?.() !== 0) {
    process.stderr.write('early-syn-queue: needs root (a network namespace and iptables rules)\n');
    process.exit(2);
  }
  const ns = `tse-bench-${process.pid}`;
  const cleanup = (): void => { spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); };
  process.once('SIGINT', () => { cleanup(); process.exit(130); });
  process.once('SIGTERM', () => { cleanup(); process.exit(143); });
  try {
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const self = fileURLToPath(import.meta.url);
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, self, '--inner', '--rounds', String(args.rounds), '--connects', String(args.connects)],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 30 * 60_000 });
    if (r.status !== 0) throw new Error(`inner run failed (status ${String(r.status)})`);
    const result = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { summary: Summary; captured: number };
    process.stdout.write(`${table(result.summary)}\n\nSYN events delivered by the reader: ${result.captured}\n`);
    if (args.json !== undefined) writeFileSync(args.json, `${JSON.stringify({ date: new Date().toISOString(), ...result }, null, 2)}\n`);
  } finally {
    cleanup();
  }
}

const args = parseArgs(process.argv.slice(2));
if (args.inner) await inner(args);
else outer(args);
