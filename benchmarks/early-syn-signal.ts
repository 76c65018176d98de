/**
 * Early SYN's signal, two ways, side by side in one run: how soon after a client's
 * connect() the relay's main thread learns of the SYN, through NFQUEUE (what early SYN
 * uses: src/intercept/syn-capture.ts) or through conntrack NEW events (the alternative the
 * issue named: src/sys/conntrack-events.ts), and what each costs the handshake.
 *
 *   node dist/benchmarks/early-syn-signal.js [--rounds 5] [--connects 100] [--burst 256] [--busy-us 0] [--json PATH]
 *
 * Needs root: it makes a network namespace of its own (tsct-bench-<pid>, deleted at exit,
 * also on failure or Ctrl-C), and runs itself inside it. Rows, interleaved round by round
 * (the order rotates each round), each with its rules installed for the row only:
 * - no signal:  no rule, no reader (the reference for the handshake and accept times)
 * - nfqueue:    SynRules' NFQUEUE rule (mangle PREROUTING, --queue-bypass) + SynCapture:
 *               a worker_thread with a blocking ppoll loop that gives the ACCEPT verdict at
 *               once and posts the event, as the relay runs it (normal priority)
 * - conntrack:  an iptables rule `-A INPUT -m conntrack --ctstate NEW -j ACCEPT` (without a
 *               rule that uses conntrack the namespace is not tracked and no event comes)
 *               + a ConntrackEvents socket read on a worker_thread of its own, the same
 *               blocking poll loop posting each event to the main thread
 *
 * Per connect (sequential, 127.0.0.1 to a listener in this process), from just before
 * net.connect(), all on the main thread's process.hrtime clock:
 * - signal:    the SYN's event handled on the main thread (nfqueue, conntrack rows);
 *   "at reader": when the reader thread read it (same clock);
 * - accept:    the listener's 'connection' event for that connection;
 * - handshake: tcpi_rtt read from the client socket at 'connect' (the kernel's SYN →
 *   SYN-ACK sample, free of event-loop delay: what a queue verdict adds shows here);
 * - connect(): to the client's 'connect' event.
 * Also counted: signals that came after the accept (an early leg could not have started
 * before accept), signals lost (none within 200 ms of the connection), and duplicates.
 * The conntrack reader passes on only entries in state SYN_SENT: an entry that conntrack
 * picked up mid-stream (a late packet of a connection it did not track) is NEW too, but no
 * SYN; such events are counted (notSyn), not used.
 * Both events are handled by the one event loop, so their order is the loop's: with an idle
 * loop, whichever message it finds first; --busy-us keeps the loop busy after each
 * connect() so that both are ready when it next polls (a relay's worker with other
 * connections to serve).
 *
 * --realtime adds both signal rows again with the reader thread in SCHED_FIFO.
 *
 * Then, per signal row, one burst of --burst concurrent connects (0: none): how long it
 * took and how many connects took over 900 ms (a retransmitted SYN), events that arrived,
 * and the readers' own loss counters (NFQUEUE overruns, which NETLINK_NO_ENOBUFS keeps at
 * 0; the conntrack socket's sk_drops).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { SynCapture } from '../src/intercept/syn-capture.js';
import { SynRules } from '../src/intercept/syn-rules.js';
import { ConntrackEvents, TCP_CONNTRACK_SYN_SENT, type ConntrackEvent } from '../src/sys/conntrack-events.js';
import { socketFd } from '../src/sys/tcp-socket.js';
import { setThreadRealtime } from '../src/sys/thread.js';
import { tcpRtt } from '../src/sys/tcp-info.js';

const ALL_ROWS = ['no signal', 'nfqueue', 'conntrack', 'nfqueue, SCHED_FIFO', 'conntrack, SCHED_FIFO'] as const;
type Row = (typeof ALL_ROWS)[number];
/** The rows of a run: the SCHED_FIFO ones only with --realtime. */
const rowsOf = (realtime: boolean): readonly Row[] => (realtime ? ALL_ROWS : ALL_ROWS.slice(0, 3));
const isRealtime = (row: Row): boolean => row.endsWith('SCHED_FIFO');
const QUEUE = 43;
const WARMUP = 10;
/** A signal not on the main thread this long after its connection completed is lost. */
const SIGNAL_WAIT_MS = 200;
/** Bound on one connect (client 'connect' and the listener's 'connection'). */
const CONNECT_TIMEOUT_MS = 3000;
const BURST_TIMEOUT_MS = 10_000;
const START_TIMEOUT_MS = 5000;
const STOP_TIMEOUT_MS = 2000;
/** The whole inner run (the default takes a few seconds). */
const INNER_TIMEOUT_MS = 30 * 60_000;
const CT_RULE = ['INPUT', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'ACCEPT'];

const USAGE = `usage: node dist/benchmarks/early-syn-signal.js [--rounds N] [--connects N] [--burst N] [--busy-us N] [--realtime] [--json PATH]

Root only. Measures, in a network namespace of its own, how soon a SYN's event reaches
the main thread through NFQUEUE (SynCapture) and through conntrack NEW events, what each
costs the handshake, and how often the event comes after the listener's accept.

  --rounds N     interleaved rounds (default 5)
  --connects N   measured sequential connects per row and round (default 100; +${WARMUP} warm-up)
  --burst N      concurrent connects in one burst per signal row, after the rounds (default 256, 0: none)
  --busy-us N    keep the main thread busy N us right after each connect() syscall (default 0):
                 a loop with other work, so that accept and signal are both ready when it polls
                 and their order is the kernel's
  --realtime     add both signal rows again with their reader thread in SCHED_FIFO
  --json PATH    write the summary (per-row distributions and counts) as JSON
`;

// ---- the conntrack reader thread -------------------------------------------------------

interface CtThreadData {
  readonly role: 'conntrack-reader';
  /** Run the loop in SCHED_FIFO (as SynCapture's `realtime`). */
  readonly realtime: boolean;
  /** [0]: 1 stops the loop. */
  readonly control: Int32Array;
  /** [0] events, [1] sk_drops, [2] ENOBUFS overruns, [3] skipped messages, [4] TCP entries not made by a SYN. */
  readonly counters: Float64Array;
}

type CtMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'error'; readonly message: string }
  | { readonly type: 'event'; readonly saddr: string; readonly sport: number; readonly daddr: string; readonly dport: number; readonly readNs: bigint };

/** The loop of the conntrack row's thread: as syn-capture-thread.ts, with events instead of verdicts. */
function conntrackThread(data: CtThreadData): void {
  let events: ConntrackEvents;
  try {
    events = ConntrackEvents.open();
  } catch (err) {
    parentPort?.postMessage({ type: 'error', message: err instanceof Error ? err.message : String(err) } satisfies CtMessage);
    return;
  }
  if (data.realtime) {
    try {
      setThreadRealtime(1);
    } catch {
      // without CAP_SYS_NICE the loop runs at normal priority (as SynCapture's)
    }
  }
  parentPort?.postMessage({ type: 'ready' } satisfies CtMessage);
  const onEvent = (e: ConntrackEvent): void => {
    const readNs = process.hrtime.bigint();
    data.counters[0] = (data.counters[0] ?? 0) + 1;
    if (e.protocol !== 6) return;
    // An entry picked up mid-stream (a late packet of a connection conntrack did not know)
    // is NEW too, but no SYN: not a signal.
    if (e.tcpState !== TCP_CONNTRACK_SYN_SENT) { data.counters[4] = (data.counters[4] ?? 0) + 1; return; }
    parentPort?.postMessage({ type: 'event', saddr: e.saddr, sport: e.sport, daddr: e.daddr, dport: e.dport, readNs } satisfies CtMessage);
  };
  try {
    while (Atomics.load(data.control, 0) === 0) {
      if (events.waitReadable(50e6)) events.receive(onEvent);
      data.counters[2] = events.overruns;
      data.counters[3] = events.skipped;
    }
    data.counters[1] = events.drops();
  } catch (err) {
    parentPort?.postMessage({ type: 'error', message: err instanceof Error ? err.message : String(err) } satisfies CtMessage);
  } finally {
    events.close();
  }
}

/** The conntrack row's reader: the thread above, owned from the main thread. */
class ConntrackReader {
  readonly #worker: Worker;
  readonly #control = new Int32Array(new SharedArrayBuffer(4));
  readonly #counters = new Float64Array(new SharedArrayBuffer(8 * 5));
  readonly #exited: Promise<void>;

  private constructor(realtime: boolean, onEvent: (e: SignalEvent) => void) {
    const data: CtThreadData = { role: 'conntrack-reader', realtime, control: this.#control, counters: this.#counters };
    this.#worker = new Worker(new URL(import.meta.url), { workerData: data, execArgv: [], name: 'bench-conntrack' });
    this.#exited = new Promise((resolve) => { this.#worker.once('exit', () => { resolve(); }); });
    this.#worker.on('message', (m: CtMessage) => {
      if (m.type === 'event') {
        const mainNs = process.hrtime.bigint();
        onEvent({ sport: m.sport, dport: m.dport, mainNs, readNs: m.readNs });
      }
    });
  }

  static async start(realtime: boolean, onEvent: (e: SignalEvent) => void): Promise<ConntrackReader> {
    const reader = new ConntrackReader(realtime, onEvent);
    const worker = reader.#worker;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('conntrack reader: no ready within 5 s')); }, START_TIMEOUT_MS);
      worker.on('message', (m: CtMessage) => {
        if (m.type === 'ready') { clearTimeout(timer); resolve(); }
        if (m.type === 'error') { clearTimeout(timer); reject(new Error(`conntrack reader: ${m.message}`)); }
      });
      worker.once('error', (e) => { clearTimeout(timer); reject(e); });
    }).catch(async (err: unknown) => { await reader.stop(); throw err; });
    return reader;
  }

  /** Events read, sk_drops, ENOBUFS overruns, skipped messages, entries not made by a SYN (final after stop()). */
  stats(): { events: number; drops: number; overruns: number; skipped: number; notSyn: number } {
    const c = this.#counters;
    return { events: c[0] ?? 0, drops: c[1] ?? 0, overruns: c[2] ?? 0, skipped: c[3] ?? 0, notSyn: c[4] ?? 0 };
  }

  async stop(): Promise<void> {
    Atomics.store(this.#control, 0, 1);
    const timer = setTimeout(() => { void this.#worker.terminate(); }, STOP_TIMEOUT_MS);
    await this.#exited;
    clearTimeout(timer);
  }
}

// ---- measuring -------------------------------------------------------------------------

interface Args { rounds: number; connects: number; burst: number; busyUs: number; realtime: boolean; json: string | undefined; inner: boolean }

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { rounds: 5, connects: 100, burst: 256, busyUs: 0, realtime: false, json: undefined, inner: false };
  const count = (v: string, name: string, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      process.stderr.write(`early-syn-signal: ${name} must be an integer in ${min}..${max}, got '${v}'\n`);
      process.exit(2);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--help' || a === '-h') { process.stdout.write(USAGE); process.exit(0); }
    else if (a === '--inner') args.inner = true;
    else if (a === '--realtime') args.realtime = true;
    else if (a === '--rounds' && v !== undefined) { args.rounds = count(v, '--rounds', 1, 100); i++; }
    else if (a === '--connects' && v !== undefined) { args.connects = count(v, '--connects', 1, 10_000); i++; }
    else if (a === '--burst' && v !== undefined) { args.burst = count(v, '--burst', 0, 4096); i++; }
    else if (a === '--busy-us' && v !== undefined) { args.busyUs = count(v, '--busy-us', 0, 100_000); i++; }
    else if (a === '--json' && v !== undefined) { args.json = v; i++; }
    else {
      process.stderr.write(USAGE);
      process.exit(2);
    }
  }
  return args;
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

interface SignalEvent { sport: number; dport: number; mainNs: bigint; readNs: bigint }

/** One arrival on the main thread, and (signals) when the reader thread read it. */
interface Arrival { readonly t: bigint; readonly read?: bigint }

/**
 * Arrivals on the main thread by client port, with a bounded wait for one port. Only
 * arrivals at or after a connect's start count for it: a port can be reused, and an event
 * of an earlier connection on it may come late.
 */
class Arrivals {
  readonly #byPort = new Map<number, Arrival[]>();
  readonly #waiters = new Map<number, () => void>();

  mark(port: number, arrival: Arrival): void {
    const list = this.#byPort.get(port);
    if (list === undefined) this.#byPort.set(port, [arrival]);
    else list.push(arrival);
    this.#waiters.get(port)?.();
  }

  /** Arrivals for `port` since `since`. */
  since(port: number, since: bigint): Arrival[] {
    return (this.#byPort.get(port) ?? []).filter((a) => a.t >= since);
  }

  /** The first arrival for `port` since `since`, waiting up to `ms` for it. */
  async wait(port: number, since: bigint, ms: number): Promise<Arrival | undefined> {
    const seen = this.since(port, since)[0];
    if (seen !== undefined) return seen;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void { clearTimeout(timer); resolve(); }
      this.#waiters.set(port, done);
    });
    this.#waiters.delete(port);
    return this.since(port, since)[0];
  }

  clear(): void { this.#byPort.clear(); }
}

interface Sample {
  connectUs: number;
  handshakeUs: number;
  acceptUs: number;
  /** Undefined: no signal row, or lost. */
  signalUs: number | undefined;
  readerUs: number | undefined;
  duplicates: number;
}

interface Bench {
  readonly port: number;
  readonly accepts: Arrivals;
  readonly signals: Arrivals;
}

const us = (from: bigint, to: bigint): number => Number(to - from) / 1e3;

/** Spins `n` microseconds (the main thread doing other work). */
function spin(n: number): void {
  const until = process.hrtime.bigint() + BigInt(n) * 1000n;
  while (process.hrtime.bigint() < until) { /* busy */ }
}

async function connectOnce(b: Bench, signalRow: boolean, busyUs: number): Promise<Sample> {
  const start = process.hrtime.bigint();
  const c = net.connect({ host: '127.0.0.1', port: b.port });
  // net.connect() to an IP literal makes the connect() call in a nextTick: this one runs after it.
  if (busyUs > 0) process.nextTick(spin, busyUs);
  try {
    const { connectAt, handshakeUs, sport } = await new Promise<{ connectAt: bigint; handshakeUs: number; sport: number }>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`connect to 127.0.0.1:${b.port} took over ${CONNECT_TIMEOUT_MS} ms`)); }, CONNECT_TIMEOUT_MS);
      c.once('error', (e) => { clearTimeout(timer); reject(e); });
      c.once('connect', () => {
        clearTimeout(timer);
        const connectAt = process.hrtime.bigint();
        const fd = socketFd(c);
        resolve({ connectAt, handshakeUs: fd === undefined ? NaN : tcpRtt(fd).rttUs, sport: c.localPort ?? 0 });
      });
    });
    const accepted = await b.accepts.wait(sport, start, CONNECT_TIMEOUT_MS);
    if (accepted === undefined) throw new Error(`the listener did not accept port ${sport} within ${CONNECT_TIMEOUT_MS} ms`);
    const signal = signalRow ? await b.signals.wait(sport, start, SIGNAL_WAIT_MS) : undefined;
    return {
      connectUs: us(start, connectAt), handshakeUs, acceptUs: us(start, accepted.t),
      signalUs: signal === undefined ? undefined : us(start, signal.t),
      readerUs: signal?.read === undefined ? undefined : us(start, signal.read),
      duplicates: Math.max(0, b.signals.since(sport, start).length - 1),
    };
  } finally {
    c.destroy();
  }
}

/** `n` concurrent connects; resolves with how many connected within the bound. */
interface BurstResult { connected: number; ports: number[]; start: bigint; ms: number; slow: number }

/** A connect slower than this had a SYN or SYN-ACK retransmitted (the first retransmission is after 1 s). */
const RETRANSMITTED_MS = 900;

async function burst(b: Bench, n: number): Promise<BurstResult> {
  const start = process.hrtime.bigint();
  const ports: number[] = [];
  let connected = 0;
  let slow = 0;
  const one = (): Promise<void> => new Promise((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port: b.port });
    const timer = setTimeout(() => { c.destroy(); resolve(); }, BURST_TIMEOUT_MS);
    c.once('error', () => { clearTimeout(timer); resolve(); });
    c.once('connect', () => {
      clearTimeout(timer);
      connected++;
      if (us(start, process.hrtime.bigint()) > RETRANSMITTED_MS * 1e3) slow++;
      ports.push(c.localPort ?? 0);
      c.destroy();
      resolve();
    });
  });
  await Promise.all(Array.from({ length: n }, one));
  return { connected, ports, start, ms: us(start, process.hrtime.bigint()) / 1e3, slow };
}

function iptables(...args: string[]): void {
  execFileSync('iptables', ['-w', '5', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}

interface Setup { stop(): Promise<{ lostInKernel: number; detail: Record<string, number> }> }

/** Installs the row's rule and starts its reader; `onEvent` gets each TCP event to our port. */
async function setUp(row: Row, port: number, onEvent: (e: SignalEvent) => void): Promise<Setup> {
  if (row === 'no signal') return { stop: () => Promise.resolve({ lostInKernel: 0, detail: {} }) };
  if (row.startsWith('nfqueue')) {
    const rules = await SynRules.install({ instance: 'sigbench', workers: 1, queueBase: QUEUE, capture: [{ cidr: '127.0.0.1/32', ports: { first: port, last: port } }] });
    let capture: SynCapture;
    try {
      capture = await SynCapture.start({
        queueNum: QUEUE,
        realtime: isRealtime(row),
        onSyn: (e) => {
          const mainNs = process.hrtime.bigint();
          if (e.dport === port) onEvent({ sport: e.sport, dport: e.dport, mainNs, readNs: BigInt(Math.round(e.t * 1e6)) });
        },
      });
    } catch (err) {
      await rules.close();
      throw err;
    }
    return {
      stop: async () => {
        const s = capture.stats();
        await capture.stop();
        await rules.close();
        return { lostInKernel: s.overruns, detail: { packets: s.packets, syns: s.syns, unparsed: s.unparsed, overruns: s.overruns } };
      },
    };
  }
  iptables('-A', ...CT_RULE);
  /** SYN_SENT entries of connections not to our port (there should be none). */
  let other = 0;
  let reader: ConntrackReader;
  try {
    reader = await ConntrackReader.start(isRealtime(row), (e) => {
      if (e.dport === port) onEvent(e);
      else other++;
    });
  } catch (err) {
    iptables('-D', ...CT_RULE);
    throw err;
  }
  return {
    stop: async () => {
      await reader.stop();
      iptables('-D', ...CT_RULE);
      const s = reader.stats();
      return { lostInKernel: s.drops + s.overruns, detail: { ...s, other } };
    },
  };
}

type Dist = Record<'p50' | 'p90' | 'p99', number>;

interface RowSummary {
  row: Row;
  n: number;
  connectUs: Dist;
  handshakeUs: Dist;
  acceptUs: Dist;
  signalUs?: Dist;
  readerUs?: Dist;
  /** signal minus accept, per connect with a signal: negative is before the accept. */
  signalMinusAcceptUs?: Dist;
  afterAccept?: number;
  lost?: number;
  duplicates?: number;
  lostInKernel?: number;
  /** `ms`: from the first connect() to the last connection; `slow`: connects that took over 900 ms (a retransmission). */
  burst?: { sent: number; connected: number; ms: number; slow: number; events: number; lostInKernel: number; detail: Record<string, number> };
}

function dist(values: readonly number[]): Dist {
  const s = [...values].sort((a, b) => a - b);
  return { p50: quantile(s, 0.5), p90: quantile(s, 0.9), p99: quantile(s, 0.99) };
}

async function inner(args: Args): Promise<void> {
  const accepts = new Arrivals();
  const server = net.createServer((s) => {
    accepts.mark(s.remotePort ?? 0, { t: process.hrtime.bigint() });
    s.on('error', () => undefined);
    s.destroy();
  });
  server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 });
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  const b: Bench = { port, accepts, signals: new Arrivals() };
  const onEvent = (e: SignalEvent): void => { b.signals.mark(e.sport, { t: e.mainNs, read: e.readNs }); };
  const rows = rowsOf(args.realtime);
  const samples = new Map<Row, Sample[]>(rows.map((r) => [r, []]));
  const lostInKernel = new Map<Row, number>(rows.map((r) => [r, 0]));
  try {
    for (let round = 0; round < args.rounds; round++) {
      // Rotate the order each round so that no row always runs first (warm caches) or last.
      const order = rows.map((_, i) => rows[(i + round) % rows.length] ?? 'no signal');
      for (const row of order) {
        const setup = await setUp(row, port, onEvent);
        try {
          for (let i = 0; i < WARMUP; i++) await connectOnce(b, row !== 'no signal', args.busyUs);
          const into = samples.get(row) ?? [];
          for (let i = 0; i < args.connects; i++) into.push(await connectOnce(b, row !== 'no signal', args.busyUs));
        } finally {
          const r = await setup.stop();
          lostInKernel.set(row, (lostInKernel.get(row) ?? 0) + r.lostInKernel);
          b.signals.clear();
          accepts.clear();
        }
      }
      process.stderr.write(`round ${round + 1}/${args.rounds} done\n`);
    }
    const bursts = new Map<Row, RowSummary['burst']>();
    if (args.burst > 0) {
      for (const row of ['nfqueue', 'conntrack'] as const) {
        const setup = await setUp(row, port, onEvent);
        let result: BurstResult = { connected: 0, ports: [], start: 0n, ms: NaN, slow: 0 };
        try {
          result = await burst(b, args.burst);
          // Let the reader catch up: until every connected port has its event, at most 1 s.
          const deadline = Date.now() + 1000;
          const missing = (): boolean => result.ports.some((p) => b.signals.since(p, result.start).length === 0);
          while (Date.now() < deadline && missing()) await new Promise((r) => setTimeout(r, 10));
        } finally {
          const r = await setup.stop();
          const events = result.ports.filter((p) => b.signals.since(p, result.start).length > 0).length;
          bursts.set(row, { sent: args.burst, connected: result.connected, ms: result.ms, slow: result.slow, events, lostInKernel: r.lostInKernel, detail: r.detail });
          b.signals.clear();
          accepts.clear();
        }
        process.stderr.write(`burst of ${args.burst} with ${row} done\n`);
      }
    }
    const summary: RowSummary[] = rows.map((row) => {
      const s = samples.get(row) ?? [];
      const base: RowSummary = {
        row, n: s.length,
        connectUs: dist(s.map((x) => x.connectUs)), handshakeUs: dist(s.map((x) => x.handshakeUs)), acceptUs: dist(s.map((x) => x.acceptUs)),
      };
      if (row === 'no signal') return base;
      const withSignal = s.filter((x): x is Sample & { signalUs: number } => x.signalUs !== undefined);
      const burstResult = bursts.get(row);
      return {
        ...base,
        signalUs: dist(withSignal.map((x) => x.signalUs)),
        readerUs: dist(withSignal.flatMap((x) => (x.readerUs === undefined ? [] : [x.readerUs]))),
        signalMinusAcceptUs: dist(withSignal.map((x) => x.signalUs - x.acceptUs)),
        afterAccept: withSignal.filter((x) => x.signalUs > x.acceptUs).length,
        lost: s.length - withSignal.length,
        duplicates: s.reduce((n, x) => n + x.duplicates, 0),
        lostInKernel: lostInKernel.get(row) ?? 0,
        ...(burstResult === undefined ? {} : { burst: burstResult }),
      };
    });
    process.stdout.write(`${JSON.stringify({ summary })}\n`);
  } finally {
    server.close();
  }
}

// ---- the report, and the namespace around the run -----------------------------------------

function table(summary: readonly RowSummary[]): string {
  const base = summary.find((s) => s.row === 'no signal');
  const f = (n: number | undefined): string => (n === undefined || Number.isNaN(n) ? '—' : n.toFixed(0)).padStart(5);
  const d = (x: Dist | undefined): string => (x === undefined ? '    — /     — /     —' : `${f(x.p50)} / ${f(x.p90)} / ${f(x.p99)}`);
  const pct = (k: number | undefined, n: number): string => (k === undefined ? '—' : `${k}/${n} (${((100 * k) / Math.max(1, n)).toFixed(0)}%)`);
  const lines = [
    '| row | n | signal on main thread p50 / p90 / p99 (us) | at reader p50 | signal − accept p50 / p90 / p99 | after accept | lost (kernel) | dup | accept p50 / p90 / p99 | handshake p50 / p90 / p99 | added p50 | connect() p50 / p90 / p99 |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const s of summary) {
    const lost = s.lost === undefined ? '—' : `${s.lost} (${s.lostInKernel ?? 0})`;
    lines.push(`| ${s.row} | ${s.n} | ${d(s.signalUs)} | ${f(s.readerUs?.p50)} | ${d(s.signalMinusAcceptUs)} | ${pct(s.afterAccept, s.n - (s.lost ?? 0))} | ${lost} | ${s.duplicates ?? '—'} `
      + `| ${d(s.acceptUs)} | ${d(s.handshakeUs)} | ${f(s.handshakeUs.p50 - (base?.handshakeUs.p50 ?? 0))} | ${d(s.connectUs)} |`);
  }
  const bursts = summary.filter((s) => s.burst !== undefined);
  if (bursts.length > 0) {
    lines.push('', '| burst | sent | connected (ms) | over 900 ms | with an event | lost in the kernel | reader counters |', '|---|---|---|---|---|---|---|');
    for (const s of bursts) {
      const x = s.burst;
      if (x === undefined) continue;
      lines.push(`| ${s.row} | ${x.sent} | ${x.connected} (${x.ms.toFixed(0)}) | ${x.slow} | ${x.events} | ${x.lostInKernel} | ${Object.entries(x.detail).map(([k, v]) => `${k} ${v}`).join(', ')} |`);
    }
  }
  return lines.join('\n');
}

/** Runs the inner process in the namespace; resolves with its stdout. A signal to us stops it and deletes the namespace. */
async function outer(args: Args): Promise<void> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('early-syn-signal: needs root (a network namespace, iptables rules, netlink)\n');
    process.exit(2);
  }
  const ns = `tsct-bench-${process.pid}`;
  const cleanup = (): void => { spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); };
  let child: ChildProcess | undefined;
  const onSignal = (code: number) => (): void => {
    child?.kill('SIGTERM');
    cleanup();
    process.exit(code);
  };
  process.once('SIGINT', onSignal(130));
  process.once('SIGTERM', onSignal(143));
  try {
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const self = fileURLToPath(import.meta.url);
    // `ip netns exec` execs node: the child's pid is the inner run's.
    const inner = spawn('ip', ['netns', 'exec', ns, process.execPath, self, '--inner',
      '--rounds', String(args.rounds), '--connects', String(args.connects), '--burst', String(args.burst), '--busy-us', String(args.busyUs),
      ...(args.realtime ? ['--realtime'] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
    child = inner;
    let stdout = '';
    inner.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    const timer = setTimeout(() => { inner.kill('SIGTERM'); }, INNER_TIMEOUT_MS);
    const [status, signal] = (await once(inner, 'exit')) as [number | null, NodeJS.Signals | null];
    clearTimeout(timer);
    child = undefined;
    if (status !== 0) throw new Error(`inner run failed (status ${String(status)}${signal === null ? '' : `, ${signal}`})`);
    const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { summary: RowSummary[] };
    process.stdout.write(`${table(result.summary)}\n`);
    if (args.json !== undefined) {
      const meta = { date: new Date().toISOString(), rounds: args.rounds, connects: args.connects, burst: args.burst, busyUs: args.busyUs, realtime: args.realtime };
      writeFileSync(args.json, `${JSON.stringify({ ...meta, ...result }, null, 2)}\n`);
    }
  } finally {
    cleanup();
  }
}

if (!isMainThread && (workerData as Partial<CtThreadData> | null)?.role === 'conntrack-reader') {
  conntrackThread(workerData as CtThreadData);
} else {
  const args = parseArgs(process.argv.slice(2));
  if (args.inner) await inner(args);
  else await outer(args);
}
