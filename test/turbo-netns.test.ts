/**
 * Turbo-Start routes in two network namespaces (needs root): a route with initcwnd 100
 * toward the peer gives tcpi_snd_cwnd 100 on a connection to it, and 10 to another
 * address; routes are removed on close and, after a "crash", by the next start; a host
 * route that is not ours is left alone. Namespaces tsp-p9-<pid>-{a,b} are deleted even
 * when a test fails.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { TurboRoutes, TURBO_ROUTE_PROTO } from '../src/turbo/route-tuning.js';
import { DEFAULT_TURBO_TUNING, relayLegSocketOptions, verifyTurboTuning } from '../src/turbo/turbo-options.js';
import { ConfigError, TurboRouteError } from '../src/errors.js';
import type { TcpInfo } from '../src/sys/index.js';
import { needsRoot } from './helpers/lab.js';

const skip = needsRoot;
const NS_A = `tsp-p9-${process.pid}-a`;
const NS_B = `tsp-p9-${process.pid}-b`;
const DEV_A = `tsp9a${process.pid % 10000}`;
const DEV_B = `tsp9b${process.pid % 10000}`;
const A = '198.18.209.1';
const PEER = '198.18.209.2';
const OTHER = '198.18.209.3';
const PORT = 5099;
const PROBE = fileURLToPath(new URL('./helpers/turbo-probe.js', import.meta.url));

const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8' });
const children: ChildProcess[] = [];

function teardown(): void {
  for (const child of children) if (child.exitCode === null && child.pid !== undefined) child.kill('SIGKILL');
  for (const ns of [NS_A, NS_B]) {
    try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* not there */ }
  }
}

async function setup(): Promise<void> {
  teardown();
  ip('netns', 'add', NS_A);
  ip('netns', 'add', NS_B);
  ip('link', 'add', DEV_A, 'netns', NS_A, 'type', 'veth', 'peer', 'name', DEV_B, 'netns', NS_B);
  ip('-n', NS_A, 'link', 'set', 'lo', 'up');
  ip('-n', NS_B, 'link', 'set', 'lo', 'up');
  ip('-n', NS_A, 'link', 'set', DEV_A, 'up');
  ip('-n', NS_B, 'link', 'set', DEV_B, 'up');
  ip('-n', NS_A, 'addr', 'add', `${A}/24`, 'dev', DEV_A);
  ip('-n', NS_B, 'addr', 'add', `${PEER}/24`, 'dev', DEV_B);
  ip('-n', NS_B, 'addr', 'add', `${OTHER}/24`, 'dev', DEV_B);
  const server = spawn('ip', ['netns', 'exec', NS_B, process.execPath, PROBE, 'serve', String(PORT)], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(server);
  await new Promise<void>((resolve, reject) => {
    server.stdout.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve(); });
    server.once('exit', (code) => { reject(new Error(`probe server exited with ${code}`)); });
  });
}

function probe(host: string, bufferBytes?: number): TcpInfo {
  const out = execFileSync('ip', ['netns', 'exec', NS_A, process.execPath, PROBE, 'cwnd', host, String(PORT), ...(bufferBytes === undefined ? [] : [String(bufferBytes)])], { encoding: 'utf8' });
  return JSON.parse(out) as TcpInfo;
}

after(teardown);

void test('turbo tuning: defaults (100 segments) and validation', () => {
  assert.equal(DEFAULT_TURBO_TUNING.initCwnd, 100);
  assert.equal(DEFAULT_TURBO_TUNING.initRwnd, 100);
  assert.deepEqual(relayLegSocketOptions({ ...DEFAULT_TURBO_TUNING, socketBufferBytes: 0 }), { noDelay: true });
  assert.throws(() => verifyTurboTuning({ ...DEFAULT_TURBO_TUNING, initCwnd: 0 }), ConfigError);
  assert.throws(() => verifyTurboTuning({ ...DEFAULT_TURBO_TUNING, congestion: 'no such!' }), ConfigError);
});

void test('netns: a route with initcwnd 100 gives tcpi_snd_cwnd 100 to the peer and 10 elsewhere; removed on close', { skip, timeout: 60_000 }, async (t) => {
  await setup();
  const routes = new TurboRoutes({ initCwnd: 100, initRwnd: 100, netns: NS_A });
  assert.equal(await routes.removeStale(), 0);
  const before = probe(PEER);
  const applied = await routes.apply(PEER);
  assert.equal(applied.dev, DEV_A);
  assert.deepEqual(await routes.read(PEER), { initCwnd: 100, initRwnd: 100 });
  const toPeer = probe(PEER);
  const toOther = probe(OTHER);
  t.diagnostic(`snd_cwnd: before ${before.sndCwnd}, to the peer ${toPeer.sndCwnd}, to another address ${toOther.sndCwnd}`);
  assert.equal(before.sndCwnd, 10);
  assert.equal(toPeer.sndCwnd, 100);
  assert.equal(toOther.sndCwnd, 10);

  // Buffers set before connect decide the window scale the SYN announces.
  const small = probe(PEER, 64 * 1024);
  const large = probe(PEER, DEFAULT_TURBO_TUNING.socketBufferBytes);
  const auto = toPeer;
  t.diagnostic(`rcv_wscale: SO_RCVBUF 64 KiB ${small.rcvWscale}, 4 MiB ${large.rcvWscale}, autotuning ${auto.rcvWscale}; rcv_ssthresh ${small.rcvSsthresh} / ${large.rcvSsthresh} / ${auto.rcvSsthresh}`);
  assert.ok(large.rcvWscale > small.rcvWscale);
  // Autotuning starts from tcp_rmem[1] and offers ~44 segments in the handshake; a large buffer
  // set before connect lets the window start at initrwnd (100 segments).
  assert.ok(large.rcvSsthresh > auto.rcvSsthresh, `rcv_ssthresh ${large.rcvSsthresh} vs ${auto.rcvSsthresh}`);

  await routes.removeAll();
  assert.equal(await routes.read(PEER), undefined);
  assert.equal(probe(PEER).sndCwnd, 10);
  assert.equal(ip('-n', NS_A, '-j', 'route', 'show', 'proto', String(TURBO_ROUTE_PROTO)).trim(), '[]');
});

void test('netns: routes left by a crashed relay are removed at the next start; a route that is not ours is left alone', { skip, timeout: 60_000 }, async () => {
  await setup();
  const crashed = new TurboRoutes({ initCwnd: 100, initRwnd: 100, netns: NS_A });
  await crashed.apply(PEER);
  // A new process: it knows nothing of what the old one applied.
  const next = new TurboRoutes({ initCwnd: 100, initRwnd: 100, netns: NS_A });
  assert.equal(await next.removeStale(), 1);
  assert.equal(await next.read(PEER), undefined);

  ip('-n', NS_A, 'route', 'add', `${OTHER}/32`, 'dev', DEV_A, 'proto', 'static');
  await assert.rejects(next.apply(OTHER), TurboRouteError);
  assert.match(ip('-n', NS_A, 'route', 'show', 'exact', `${OTHER}/32`), /proto static/);
  assert.equal(await next.removeStale(), 0);
  assert.match(ip('-n', NS_A, 'route', 'show', 'exact', `${OTHER}/32`), /proto static/);

  await assert.rejects(next.apply(A), /local address/);
  await assert.rejects(next.apply('peer.example'), TurboRouteError);
  const reports = await next.applyAll([PEER, OTHER]);
  assert.deepEqual(reports.map((r) => r.applied), [true, false]);
  assert.match(reports[1]?.reason ?? '', /not tcpsplit's/);
  await next.removeAll();
});

void test('without the namespace (or the ip tool), apply fails with TurboRouteError and a reason', { skip }, async () => {
  const routes = new TurboRoutes({ initCwnd: 100, initRwnd: 100, netns: `tsp-p9-${process.pid}-missing` });
  await assert.rejects(routes.apply(PEER), (err: unknown) => err instanceof TurboRouteError && /failed/.test(err.message));
});

void test('netns: the route\'s congestion control (congctl) is kept on the Turbo-Start route', { skip, timeout: 60_000 }, async () => {
  await setup();
  // The lab sets CUBIC per route (a namespace cannot change its default, BBR here); the
  // Turbo-Start route once dropped it, and the rc-rs legs ran BBR under Turbo-Start.
  ip('-n', NS_A, 'route', 'replace', '198.18.209.0/24', 'dev', DEV_A, 'congctl', 'cubic');
  const routes = new TurboRoutes({ initCwnd: 100, initRwnd: 100, netns: NS_A });
  const applied = await routes.apply(PEER);
  assert.equal(applied.congestion, 'cubic');
  const [route] = JSON.parse(ip('-n', NS_A, '-j', 'route', 'show', 'exact', `${PEER}/32`)) as { metrics?: Record<string, unknown>[] }[];
  assert.deepEqual(Object.assign({}, ...(route?.metrics ?? [])), { congestion: 'cubic', initcwnd: 100, initrwnd: 100 });
  await routes.removeAll();
});
