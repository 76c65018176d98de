/**
 * Runs inside a test's network namespace (`ip netns exec tse-... node syn-capture-probe.js '<json>'`),
 * so that its iptables rules, NFQUEUE sockets and connections live there. Prints one JSON
 * line with what it saw. Modes:
 * - steer:  rules for N workers + N capture threads; `count` connections from varied
 *           source addresses; every connection's client end and every SYN event
 * - bypass: rules installed and no reader bound (never bound; bound and stopped; bound
 *           and its thread terminated): do connections still open at once?
 * - port:   events delivered to a MessagePort (as a worker would own), then retargeted
 *           to another port (as for a replacement worker)
 * - fail-open: a reader that never reads; past its queue length, SYNs are accepted unseen
 * - rules:  install; install again as after a crash (stale removal); close; with a
 *           foreign chain that must survive
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { MessageChannel } from 'node:worker_threads';
import { SynCapture, synEventOf, type SynEvent } from '../../src/intercept/syn-capture.js';
import { SynRules } from '../../src/intercept/syn-rules.js';
import { parseSynPacket } from '../../src/intercept/syn-packet.js';
import { enableSaveSyn, takeSavedSyn } from '../../src/sys/saved-syn.js';
import { socketFd } from '../../src/sys/tcp-socket.js';
import { NfQueue } from '../../src/sys/nfqueue.js';
import { tcpInfo } from '../../src/sys/tcp-info.js';

export interface SteerRequest {
  readonly mode: 'steer';
  readonly family: 4 | 6;
  readonly workers: number;
  readonly count: number;
  readonly queueBase: number;
  readonly instance: string;
  readonly server: string;
  /** Client sources: `${sourcePrefix}${n}` for IPv6, `${sourcePrefix}${a}.${b}` for IPv4. */
  readonly sourcePrefix: string;
}
export interface SteerResult {
  readonly connections: { saddr: string; sport: number }[];
  /** The accepted sockets' remote ends and the ISN of their saved SYN (TCP_SAVED_SYN). */
  readonly accepted: { saddr: string; sport: number; isn: number | undefined }[];
  readonly events: SynEvent[];
  readonly failures: number;
}
/** Sequential connects: how many connected, the slowest, and their SYN retransmissions in all. */
export interface Connects { readonly ok: number; readonly maxMs: number; readonly synRetransmits: number }
export interface BypassRequest { readonly mode: 'bypass'; readonly instance: string; readonly server: string; readonly count: number }
export interface BypassResult {
  readonly unbound: Connects;
  readonly afterStop: Connects;
  readonly afterKill: Connects;
  readonly capturedWhileBound: number;
}
export interface RulesRequest { readonly mode: 'rules'; readonly instance: string }
export interface RulesResult {
  readonly installed: string; readonly staleRemoved: number; readonly afterReinstall: string; readonly afterClose: string;
}
export interface FailOpenRequest {
  readonly mode: 'fail-open'; readonly instance: string; readonly server: string; readonly count: number; readonly maxLen: number;
  /** The reader's socket buffer (default: NfQueue's 1 MiB). */
  readonly receiveBufferBytes?: number;
}
/** `overflows`: the stuck reader's NfQueue.overflows() at the end. */
/** `atOnce`: connected without a SYN retransmission, i.e. their SYN was not held. */
export interface FailOpenResult { readonly ok: number; readonly atOnce: number; readonly overflows: number }
export interface PortRequest { readonly mode: 'port'; readonly instance: string; readonly server: string }
/** `second`: the 10 connections made once an event had reached B. `unmatched`: events naming no connection made. */
export interface PortResult { readonly first: { a: number; b: number }; readonly second: { a: number; b: number }; readonly connections: number; readonly events: number; readonly unmatched: number }
export interface TablesRequest { readonly mode: 'tables'; readonly instance: string }
/** `nft list tables` before, and after each way of closing two groups (made in one order, closed in another). */
export interface TablesResult { readonly before: string; readonly installed: string; readonly afterFirstClosedFirst: string; readonly afterLastClosedFirst: string; readonly afterConcurrent: string }
export type ProbeRequest = SteerRequest | BypassRequest | RulesRequest | PortRequest | FailOpenRequest | TablesRequest;

const PORT = 5555;

function listing(): string {
  return execFileSync('iptables', ['-t', 'mangle', '-S']).toString() + execFileSync('ip6tables', ['-t', 'mangle', '-S']).toString();
}

async function server(host: string, onAccept?: (c: net.Socket) => void): Promise<net.Server> {
  const s = net.createServer((c) => {
    c.on('error', () => undefined);
    onAccept?.(c);
    c.destroy();
  });
  s.listen(PORT, host);
  await once(s, 'listening');
  return s;
}

/** One connection; resolves with its client end, or undefined after an error or 3 s. */
/**
 * One connect. `synRetransmits` is the kernel's count (TCP_INFO) of the client's
 * retransmissions, which before the handshake can only be its SYN's: whether a SYN was
 * held (a queue nobody reads) or dropped, independent of how busy the host was (a time
 * bound mistook a stalled probe for held SYNs).
 */
function connectOnce(host: string, localAddress?: string): Promise<{ saddr: string; sport: number; ms: number; synRetransmits: number } | undefined> {
  return new Promise((resolve) => {
    const start = process.hrtime.bigint();
    const c = net.connect(localAddress === undefined ? { host, port: PORT } : { host, port: PORT, localAddress });
    const timer = setTimeout(() => { c.destroy(); resolve(undefined); }, 10_000);
    c.on('error', () => { clearTimeout(timer); resolve(undefined); });
    c.on('connect', () => {
      clearTimeout(timer);
      const fd = socketFd(c);
      const synRetransmits = fd === undefined ? Number.NaN : tcpInfo(fd).totalRetrans;
      resolve({ saddr: c.localAddress ?? '', sport: c.localPort ?? 0, ms: Number(process.hrtime.bigint() - start) / 1e6, synRetransmits });
      c.destroy();
    });
  });
}

async function steer(req: SteerRequest): Promise<SteerResult> {
  const rules = await SynRules.install({
    instance: req.instance, workers: req.workers, queueBase: req.queueBase,
    capture: [{ cidr: `${req.server}/${req.family === 4 ? 32 : 128}`, ports: { first: PORT, last: PORT } }],
  });
  const events: SynEvent[] = [];
  const captures: SynCapture[] = [];
  const accepted: SteerResult['accepted'] = [];
  const srv = await server(req.server, (c) => {
    const fd = socketFd(c);
    const syn = fd === undefined ? undefined : takeSavedSyn(fd);
    accepted.push({ saddr: c.remoteAddress ?? '', sport: c.remotePort ?? 0, isn: syn === undefined ? undefined : parseSynPacket(syn)?.isn });
  });
  const listenerFd = (srv as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (listenerFd !== undefined) enableSaveSyn(listenerFd);
  try {
    for (let k = 0; k < req.workers; k++) captures.push(await SynCapture.start({ queueNum: req.queueBase + k, onSyn: (e) => events.push(e) }));
    const connections: { saddr: string; sport: number }[] = [];
    let failures = 0;
    let next = 0;
    const source = (n: number): string => (req.family === 4
      ? `${req.sourcePrefix}${(n * 37) % 128}.${1 + ((n * 101) % 254)}`
      : `${req.sourcePrefix}${((n * 7919) % 0xfffe + 1).toString(16)}:${(n + 1).toString(16)}`);
    const lane = async (): Promise<void> => {
      while (next < req.count) {
        const r = await connectOnce(req.server, source(next++));
        if (r === undefined) failures++;
        else connections.push({ saddr: r.saddr, sport: r.sport });
      }
    };
    await Promise.all(Array.from({ length: 8 }, lane));
    for (let i = 0; i < 100 && events.length < connections.length; i++) await new Promise((r) => setTimeout(r, 20));
    return { connections, accepted, events, failures };
  } finally {
    for (const c of captures) await c.stop();
    srv.close();
    await rules.close();
  }
}

async function connectMany(host: string, count: number): Promise<Connects> {
  let ok = 0;
  let maxMs = 0;
  let synRetransmits = 0;
  for (let i = 0; i < count; i++) {
    const r = await connectOnce(host);
    if (r !== undefined) { ok++; maxMs = Math.max(maxMs, r.ms); synRetransmits += r.synRetransmits; }
  }
  return { ok, maxMs, synRetransmits };
}

async function bypass(req: BypassRequest): Promise<BypassResult> {
  const rules = await SynRules.install({ instance: req.instance, workers: 1, queueBase: 30, capture: [{ cidr: `${req.server}/32` }] });
  const srv = await server(req.server);
  try {
    const unbound = await connectMany(req.server, req.count);
    let captured = 0;
    const capture = await SynCapture.start({ queueNum: 30, onSyn: () => { captured++; } });
    await connectMany(req.server, 3);
    for (let i = 0; i < 50 && captured < 3; i++) await new Promise((r) => setTimeout(r, 20));
    await capture.stop();
    const afterStop = await connectMany(req.server, req.count);
    // A reader that dies without closing anything: terminated mid-loop.
    const doomed = await SynCapture.start({ queueNum: 30, onSyn: () => { captured++; } });
    await doomed.kill();
    const afterKill = await connectMany(req.server, req.count);
    return { unbound, afterStop, afterKill, capturedWhileBound: captured };
  } finally {
    srv.close();
    await rules.close();
  }
}

/** A reader that binds its queue and never reads it: once `maxLen` SYNs wait, fail-open accepts the rest. */
async function failOpen(req: FailOpenRequest): Promise<FailOpenResult> {
  const rules = await SynRules.install({ instance: req.instance, workers: 1, queueBase: 60, capture: [{ cidr: `${req.server}/32` }] });
  const srv = await server(req.server);
  const stuck = NfQueue.open({ queueNum: 60, maxLen: req.maxLen, ...(req.receiveBufferBytes === undefined ? {} : { receiveBufferBytes: req.receiveBufferBytes }) });
  try {
    const results = await Promise.all(Array.from({ length: req.count }, () => connectOnce(req.server)));
    const done = results.filter((r) => r !== undefined);
    return { ok: done.length, atOnce: done.filter((r) => r.synRetransmits === 0).length, overflows: stuck.overflows() };
  } finally {
    stuck.close();
    srv.close();
    await rules.close();
  }
}

async function ports(req: PortRequest): Promise<PortResult> {
  const rules = await SynRules.install({ instance: req.instance, workers: 1, queueBase: 50, capture: [{ cidr: `${req.server}/32` }] });
  const srv = await server(req.server);
  const a = new MessageChannel();
  const b = new MessageChannel();
  const onA: SynEvent[] = [];
  const onB: SynEvent[] = [];
  a.port1.on('message', (m) => { const e = synEventOf(m); if (e !== undefined) onA.push(e); });
  b.port1.on('message', (m) => { const e = synEventOf(m); if (e !== undefined) onB.push(e); });
  const capture = await SynCapture.start({ queueNum: 50, port: a.port2 });
  const settle = async (n: number): Promise<void> => {
    for (let i = 0; i < 250 && onA.length + onB.length < n; i++) await new Promise((r) => setTimeout(r, 20));
  };
  try {
    const portsSeen: number[] = [];
    for (let i = 0; i < 10; i++) portsSeen.push((await connectOnce(req.server))?.sport ?? -1);
    await settle(10);
    const first = { a: onA.length, b: onB.length };
    capture.retarget(b.port2);
    // retarget() is not acknowledged (the idle thread reads its control port every 50 ms,
    // a starved one later): connect until an event lands on B, bounded, then count 10 more.
    for (let i = 0; i < 100 && onB.length === 0; i++) {
      portsSeen.push((await connectOnce(req.server))?.sport ?? -1);
      await settle(portsSeen.length);
    }
    const switched = { a: onA.length, b: onB.length };
    for (let i = 0; i < 10; i++) portsSeen.push((await connectOnce(req.server))?.sport ?? -1);
    await settle(portsSeen.length);
    const events = [...onA, ...onB];
    return {
      first, second: { a: onA.length - switched.a, b: onB.length - switched.b },
      connections: portsSeen.length, events: events.length, unmatched: events.filter((e) => !portsSeen.includes(e.sport)).length,
    };
  } finally {
    await capture.stop();
    a.port1.close();
    b.port1.close();
    srv.close();
    await rules.close();
  }
}

async function rules(req: RulesRequest): Promise<RulesResult> {
  const options = { instance: req.instance, workers: 2, queueBase: 40, capture: [{ cidr: '198.18.0.0/15', ports: { first: 80, last: 80 } }, { cidr: 'fd00:7473:e5::/64' }] };
  // "Crash": the first install is never closed.
  await SynRules.install(options);
  const installed = listing();
  const again = await SynRules.install(options);
  const afterReinstall = listing();
  await again.close();
  return { installed, staleRemoved: again.staleRemoved, afterReinstall, afterClose: listing() };
}

function nftTables(): string {
  return execFileSync('nft', ['list', 'tables']).toString();
}

/** Two rule groups of one process, as a relay makes them (its instance's, then the queue probe's). */
async function tables(req: TablesRequest): Promise<TablesResult> {
  const before = nftTables();
  const pair = async (): Promise<[SynRules, SynRules]> => [
    await SynRules.install({ instance: `${req.instance}a`, workers: 1, queueBase: 60, capture: [{ cidr: '198.18.0.0/15', ports: { first: 80, last: 80 } }] }),
    await SynRules.install({ instance: `${req.instance}b`, workers: 1, queueBase: 61, capture: [{ cidr: '198.18.0.1/32', ports: { first: 81, last: 81 } }] }),
  ];
  let [a, b] = await pair();
  const installed = nftTables();
  await a.close(); await b.close();
  const afterFirstClosedFirst = nftTables();
  [a, b] = await pair();
  await b.close(); await a.close();
  const afterLastClosedFirst = nftTables();
  [a, b] = await pair();
  await Promise.all([a.close(), b.close()]);
  return { before, installed, afterFirstClosedFirst, afterLastClosedFirst, afterConcurrent: nftTables() };
}

const req = JSON.parse(process.argv[2] ?? '{}') as ProbeRequest;
const result = req.mode === 'steer' ? await steer(req)
  : req.mode === 'bypass' ? await bypass(req)
    : req.mode === 'port' ? await ports(req)
      : req.mode === 'fail-open' ? await failOpen(req)
        : req.mode === 'tables' ? await tables(req)
          : await rules(req);
process.stdout.write(`${JSON.stringify(result)}\n`);
