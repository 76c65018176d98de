/**
 * The control API (src/control) against real relays with two workers: every read, every
 * kind of change seen by both workers, an invalid change touching neither, the socket's
 * privacy, `tcpsplit ctl` as a person and a script use it, and pool watermarks changed
 * while downloads run, losing nothing.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { get as httpGet, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requestUnix, type JsonReply } from '../src/control/unix-http.js';
import type { RelayView } from '../src/control/relay-view.js';
import { KEY_HEX, loopbackNginx } from './helpers/net.js';
import { CLI, RelayProcess } from './helpers/relay-process.js';

const run = promisify(execFile);
const env = { TCPSPLIT_KEY: KEY_HEX };
const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-control-test-'));
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});

const FILE = randomBytes(4 * 1024 * 1024);
const FILE_SHA = createHash('sha256').update(FILE).digest('hex');

/** nginx, R_S and R_C (two workers each, the pool on), R_C's control socket and its -L port. */
let pairs = 0;
async function relayPair(): Promise<{ rc: RelayProcess; sock: string; port: number; nginx: number }> {
  const n = String(++pairs);
  const web = await loopbackNginx(new Map([['4m.bin', FILE]]));
  cleanups.push(() => web.stop());
  const rs = new RelayProcess(['--accept', '127.0.0.1:0', '--allow', '127.0.0.1/32', '--workers', '2', '--control', join(dir, `rs${n}.sock`)], { env });
  cleanups.push(() => rs.stop());
  const rsPort = (await rs.ready()).accept;
  const sock = join(dir, `rc${n}.sock`);
  const rc = new RelayProcess(['-L', `127.0.0.1:0:127.0.0.1:${String(web.port)}`, '--peer', `rs=127.0.0.1:${String(rsPort)}`,
    '--route', '127.0.0.0/8=rs', '--workers', '2', '--early-syn', 'off', '--control', sock], { env });
  cleanups.push(() => rc.stop());
  const port = (await rc.ready()).forward[0] ?? 0;
  return { rc, sock, port, nginx: web.port };
}

async function api(sock: string, method: string, path: string, body?: unknown): Promise<JsonReply> {
  return requestUnix(sock, method, path, body);
}

async function view(sock: string): Promise<RelayView> {
  const r = await api(sock, 'GET', '/v1/view');
  assert.equal(r.status, 200);
  return r.body as RelayView;
}

/** GET /4m.bin through `port`: its status and the body's sha256 (or the error). */
function download(port: number): Promise<{ status: number; sha: string }> {
  return new Promise((resolve, reject) => {
    httpGet({ host: '127.0.0.1', port, path: '/4m.bin', agent: false }, (res) => {
      const h = createHash('sha256');
      res.on('data', (c: Buffer) => h.update(c));
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, sha: h.digest('hex') }); });
      res.on('error', reject);
    }).on('error', reject);
  });
}

/** `n` downloads at once, each on its own connection (so both workers get some). */
async function downloads(port: number, n: number): Promise<{ status: number; sha: string }[]> {
  return Promise.all(Array.from({ length: n }, () => download(port)));
}

async function waitFor(cond: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('control API: reads the whole relay, changes options in both workers at once, and an invalid change touches neither', async () => {
  const { rc, sock, port } = await relayPair();
  // The socket is private.
  assert.equal(statSync(sock).mode & 0o777, 0o600);
  assert.equal(statSync(dir).mode & 0o077, 0, 'its directory is not open to others');

  // Reads: the view of both workers, the pools filling to the low watermark in each.
  await waitFor(async () => (await view(sock)).peers[0]?.pool.size === 2 * 4, 'both workers\' pools at 4');
  const results = await downloads(port, 16);
  assert.ok(results.every((r) => r.status === 200 && r.sha === FILE_SHA), 'every download whole');
  // The client has its last byte a moment before the relay records the connection's end.
  await waitFor(async () => (await view(sock)).closed === 16, '16 connections recorded');
  let v = await view(sock);
  assert.deepEqual(v.workers.map((w) => w.alive), [true, true]);
  assert.ok(v.workers.every((w) => w.accepted > 0), `both workers accepted some: ${JSON.stringify(v.workers)}`);
  assert.equal(v.workers.reduce((n, w) => n + w.accepted, 0), 16, JSON.stringify(v));
  assert.equal(v.closed, 16);
  assert.equal(v.failed, 0);
  assert.ok(v.bytes.down >= 16 * FILE.length, `bytes down ${String(v.bytes.down)}`);
  assert.deepEqual(v.features, { earlySyn: false, pool: true, turbo: true });
  assert.equal(v.peers[0]?.name, 'rs');
  assert.ok(v.peers[0].rttMs !== undefined && v.peers[0].cwnd !== undefined, 'a leg\'s TCP_INFO');
  assert.deepEqual(v.routes, [{ cidr: '127.0.0.0/8', via: 'rs' }]);
  const config = (await api(sock, 'GET', '/v1/config')).body as { running: Record<string, unknown>; overrides: object };
  assert.equal(config.running['pool-low'], 4);
  assert.equal(config.running['key'], 'set', 'the key is never shown');
  assert.deepEqual(config.overrides, {});
  assert.deepEqual((await api(sock, 'GET', '/v1/config/diff')).body, { changes: [] });

  // A change: both workers' pools grow to the new low watermark.
  let r = await api(sock, 'PATCH', '/v1/config', { 'pool-low': 6, 'pool-high': 20 });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual((r.body as { changed: { option: string }[] }).changed.map((c) => c.option), ['pool-low', 'pool-high']);
  await waitFor(async () => (await view(sock)).peers[0]?.pool.size === 2 * 6, 'both workers\' pools at 6');
  await rc.waitFor((l) => l.event === 'control-change' && Array.isArray(l['changed']) && l['changed'].includes('pool-low'));
  assert.deepEqual((await api(sock, 'GET', '/v1/config/diff')).body, { changes: [{ option: 'pool-low', change: '4 -> 6' }, { option: 'pool-high', change: '16 -> 20' }] });

  // Routes, in both workers: the same target, now direct; no pooled leg is used for it.
  const pooled = (x: RelayView): number => (x.peers[0]?.pool.takes ?? 0) + (x.peers[0]?.pool.misses ?? 0);
  const peerLegs = pooled(await view(sock));
  r = await api(sock, 'PATCH', '/v1/config', { route: { '127.0.0.0/8': 'direct' }, 'connect-timeout': '2s' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  v = await view(sock);
  assert.deepEqual(v.routes, [{ cidr: '127.0.0.0/8', via: 'direct' }]);
  const before = v.workers.map((w) => w.accepted);
  const direct = await downloads(port, 12);
  assert.ok(direct.every((x) => x.status === 200 && x.sha === FILE_SHA));
  v = await view(sock);
  assert.ok(v.workers.every((w, i) => w.accepted > (before[i] ?? 0)), `both workers served direct: ${JSON.stringify(v.workers)}`);
  assert.equal(pooled(v), peerLegs, 'no peer leg for a direct route, in any worker');

  // One peer's pool unlike the rest (--pool-peer), then that peer's pool off: in both workers.
  r = await api(sock, 'PATCH', '/v1/config', { 'pool-peer': { rs: 'low:2,high:3' } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  // Each pool keeps its learned target (6 here) within the new watermarks: 3, the new high.
  await waitFor(async () => (await view(sock)).peers[0]?.pool.size === 2 * 3, 'both workers\' pools down to 3');
  assert.deepEqual((({ low, high, enabled }) => ({ low, high, enabled }))((await view(sock)).peers[0]?.pool ?? { low: 0, high: 0, enabled: false }), { low: 2, high: 3, enabled: true });
  r = await api(sock, 'PATCH', '/v1/config', { 'pool-peer': { rs: 'pool:off' } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  await waitFor(async () => (await view(sock)).peers[0]?.pool.size === 0, 'no pool for rs in any worker');
  assert.equal((await view(sock)).features.pool, false);
  r = await api(sock, 'PATCH', '/v1/config', { 'pool-peer': null });
  assert.equal(r.status, 200);
  await waitFor(async () => (await view(sock)).peers[0]?.pool.size === 2 * 6, 'both workers\' pools back at 6');

  // Invalid changes: a bad value, an unknown key, a restart-only option next to a good
  // change. Each says what is wrong and changes nothing.
  const bad: [unknown, number, RegExp][] = [
    [{ 'pool-low': 'lots' }, 400, /change: pool-low 'lots': not a whole number/],
    [{ 'pool-low': 3, 'bogus': 1 }, 400, /unknown key 'bogus'/],
    [{ 'pool-low': 3, workers: 3 }, 409, /--workers 2 -> 3: takes effect only at a restart/],
    [{ 'pool-low': 30, 'pool-high': 20 }, 400, /--pool-low 30 is above --pool-high 20/],
    [{ allow: ['not-a-cidr'] }, 400, /allow 'not-a-cidr'/],
    [[1, 2], 400, /a change is a JSON object/],
  ];
  for (const [patch, status, message] of bad) {
    r = await api(sock, 'PATCH', '/v1/config', patch);
    assert.equal(r.status, status, JSON.stringify(patch));
    const error = (r.body as { error: { code: string; message: string } }).error;
    assert.match(error.message, message);
    assert.match(error.code, /^TCPSPLIT_ERR_/);
  }
  const after1 = (await api(sock, 'GET', '/v1/config')).body as { running: Record<string, unknown> };
  assert.equal(after1.running['pool-low'], 6, 'nothing changed');
  await new Promise((res) => setTimeout(res, 300));
  assert.equal((await view(sock)).peers[0]?.pool.size, 2 * 6, 'in no worker');
  r = await requestUnix(sock, 'PATCH', '/v1/config', undefined);
  assert.equal(r.status, 400);

  // Drop changes (null), and reload the file: run-time changes go, and the log says so.
  r = await api(sock, 'PATCH', '/v1/config', { route: null });
  assert.equal(r.status, 200);
  assert.deepEqual((await view(sock)).routes, [{ cidr: '127.0.0.0/8', via: 'rs' }]);
  r = await api(sock, 'POST', '/v1/reload');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual((await api(sock, 'GET', '/v1/config/diff')).body, { changes: [] });
  await rc.waitFor((l) => l.event === 'control-change' && Array.isArray(l['dropped']));
  // Unknown paths and methods.
  assert.equal((await api(sock, 'GET', '/v1/nope')).status, 404);
  assert.equal((await api(sock, 'DELETE', '/v1/config')).status, 405);
});

test('control API: early SYN switched on and off at run time (needs root), and the log level', { skip: process.getuid?.() === 0 ? false : 'needs root (NFQUEUE)' }, async () => {
  const { rc, sock } = await relayPair();
  assert.equal((await view(sock)).features.earlySyn, false);
  let r = await api(sock, 'PATCH', '/v1/config', { 'early-syn': 'on', 'log-level': 'debug' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const v = await view(sock);
  assert.equal(v.features.earlySyn, true);
  assert.equal(v.logLevel, 'debug');
  await rc.waitFor((l) => l.event === 'early-syn' && typeof l.msg === 'string' && l.msg.startsWith('early SYN on'));
  r = await api(sock, 'PATCH', '/v1/config', { 'early-syn': 'off' });
  assert.equal(r.status, 200);
  assert.equal((await view(sock)).features.earlySyn, false);
  await rc.waitFor((l) => l.event === 'early-syn' && l['on'] === false);
});

test('control API: pool watermarks changed again and again while 24 downloads run: every download arrives whole', async () => {
  const { sock, port } = await relayPair();
  const running = downloads(port, 24);
  for (const [low, high] of [[1, 2], [8, 16], [0, 1], [12, 24], [4, 16]] as const) {
    const r = await api(sock, 'PATCH', '/v1/config', { 'pool-low': low, 'pool-high': high });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await new Promise((res) => setTimeout(res, 30));
  }
  const results = await running;
  assert.equal(results.filter((x) => x.status === 200 && x.sha === FILE_SHA).length, 24);
  const v = await view(sock);
  assert.equal(v.failed, 0, JSON.stringify(v.recentErrors));
});

test('tcpsplit ctl: tables for people, --json for scripts, clear errors', async () => {
  const { sock } = await relayPair();
  const ctl = (...args: string[]): Promise<{ stdout: string; stderr: string }> => run(process.execPath, [CLI, 'ctl', '--socket', sock, ...args]);
  const status = (await ctl('status')).stdout;
  assert.match(status, /early SYN off, pool on, Turbo-Start on/);
  assert.match(status, /^worker\s+thread\s+alive\s+open\s+accepted\s+loop lag$/m);
  assert.match(status, /^rs\s+127\.0\.0\.1:\d+\s+on\s+\d+\s+4\/16/m);
  const peers = JSON.parse((await ctl('--json', 'peers')).stdout) as { name: string }[];
  assert.equal(peers[0]?.name, 'rs');
  assert.match((await ctl('set', 'pool-low=2', "allow=[127.0.0.0/8, 10.0.0.0/8]")).stdout, /^allow: \[\] -> \[127\.0\.0\.0\/8, 10\.0\.0\.0\/8\]\npool-low: 4 -> 2\n$/);
  assert.match((await ctl('config', '--diff')).stdout, /^pool-low\s+4 -> 2$/m);
  assert.match((await ctl('config')).stdout, /^pool-low\s+2\s+\(run-time change\)$/m);
  assert.match((await ctl('unset', 'pool-low', 'allow')).stdout, /pool-low: 2 -> 4/);
  await assert.rejects(ctl('set', 'pool-low=lots'), (e: { code: number; stderr: string }) =>
    e.code === 2 && /pool-low 'lots': not a whole number.*\[TCPSPLIT_ERR_CONFIG\]/.test(e.stderr));
  await assert.rejects(run(process.execPath, [CLI, 'ctl', '--socket', join(dir, 'absent.sock'), 'status']), (e: { code: number; stderr: string }) =>
    e.code === 1 && /no such socket; is the relay running with this --control path\? \[TCPSPLIT_ERR_CONTROL_SOCKET\]/.test(e.stderr));
  assert.match((await run(process.execPath, [CLI, 'ctl', '--help'])).stdout, /Examples\n {2}tcpsplit ctl status/);
});

test('control socket: a second relay on the same explicit path fails to start, saying why; a stale socket is replaced', async () => {
  const sock = join(dir, 'shared.sock');
  const first = new RelayProcess(['-L', '127.0.0.1:0:127.0.0.1:9', '--workers', '1', '--early-syn', 'off', '--control', sock], { env });
  cleanups.push(() => first.stop());
  await first.ready();
  const second = new RelayProcess(['-L', '127.0.0.1:0:127.0.0.1:9', '--workers', '1', '--early-syn', 'off', '--control', sock], { env });
  cleanups.push(() => second.stop());
  assert.equal(await second.exited, 1);
  assert.ok(second.lines.some((l) => typeof l.msg === 'string' && /another relay answers on it.*TCPSPLIT_ERR_CONTROL_SOCKET/.test(l.msg)), JSON.stringify(second.lines.slice(-3)));
  // The first one still answers.
  assert.equal((await api(sock, 'GET', '/v1/view')).status, 200);
  // Killed (no chance to remove its socket): the next relay replaces the stale file.
  first.child.kill('SIGKILL');
  await first.exited;
  const third = new RelayProcess(['-L', '127.0.0.1:0:127.0.0.1:9', '--workers', '1', '--early-syn', 'off', '--control', sock], { env });
  cleanups.push(() => third.stop());
  await third.ready();
  assert.equal((await api(sock, 'GET', '/v1/view')).status, 200);
});

test('control API: a change builds on the config file as last loaded (an edit since waits for a reload); bodies too large, not JSON, or dropping an unknown key are refused', async () => {
  const file = join(dir, 'rc.yaml');
  writeFileSync(file, 'forward: ["127.0.0.1:0:127.0.0.1:9"]\nlog-level: info\nearly-syn: off\n');
  const sock = join(dir, 'file.sock');
  const rc = new RelayProcess(['--config', file, '--control', sock], { env });
  cleanups.push(() => rc.stop());
  await rc.ready();
  // An edit that is not reloaded: a change made now does not pick it up (nor its restart-only backlog).
  writeFileSync(file, 'forward: ["127.0.0.1:0:127.0.0.1:9"]\nlog-level: warn\nearly-syn: off\nbacklog: 100\npool-low: 9\n');
  let r = await api(sock, 'PATCH', '/v1/config', { 'connect-timeout': '3s' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual((r.body as { changed: { option: string }[] }).changed.map((c) => c.option), ['connect-timeout']);
  assert.equal((await view(sock)).logLevel, 'info');
  // The diff is against the file as it is now: the edit shows, and so does the run-time change.
  const diff = (await api(sock, 'GET', '/v1/config/diff')).body as { changes: { option: string }[] };
  assert.deepEqual(diff.changes.map((c) => c.option).sort(), ['backlog', 'connect-timeout', 'log-level', 'pool-low']);
  // Reloading the file takes the edit (backlog is restart-only: refused whole, nothing changes).
  r = await api(sock, 'POST', '/v1/reload');
  assert.equal(r.status, 409);
  writeFileSync(file, 'forward: ["127.0.0.1:0:127.0.0.1:9"]\nlog-level: warn\nearly-syn: off\n');
  r = await api(sock, 'POST', '/v1/reload');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal((await view(sock)).logLevel, 'warn');
  assert.deepEqual(((await api(sock, 'GET', '/v1/config')).body as { overrides: object }).overrides, {}, 'the reload dropped the run-time change');

  // Bodies: too large (declared, and sent without a length), not JSON; a null for a key no file may hold.
  const big = { 'log-level': 'x'.repeat(70 * 1024) };
  r = await api(sock, 'PATCH', '/v1/config', big);
  assert.equal(r.status, 400);
  assert.match((r.body as { error: { message: string } }).error.message, /larger than 65536 bytes/);
  const chunked = await new Promise<number>((resolve, reject) => {
    const req = request({ socketPath: sock, method: 'PATCH', path: '/v1/config', headers: { 'transfer-encoding': 'chunked' } }, (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    req.on('error', reject);
    for (let i = 0; i < 20; i++) req.write('x'.repeat(8192));
    req.end();
  });
  assert.equal(chunked, 400);
  assert.equal(await requestUnixRaw(sock, '{not json'), 400);
  r = await api(sock, 'PATCH', '/v1/config', { nonsense: null });
  assert.equal(r.status, 400);
  assert.match((r.body as { error: { message: string } }).error.message, /unknown key 'nonsense'/);
  assert.equal((await api(sock, 'GET', '/v1/view')).status, 200, 'the API still answers');
});

function requestUnixRaw(sock: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: sock, method: 'PATCH', path: '/v1/config', headers: { 'content-type': 'application/json' } }, (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    req.on('error', reject);
    req.end(body);
  });
}
