/**
 * The pool wired end to end (issue 9), relays on loopback through the real config and
 * Relay: R_C with a --peer fills a pool (on by default), R_S keeps those authenticated
 * idle connections with no header deadline, takes carry downloads whole, and a restarted
 * R_S makes the whole pool stale without a client noticing or the origin seeing a byte twice.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Relay } from '../src/relay/relay.js';
import { dial, receiveAll, startRelay, tcpServer, waitFor } from './helpers/net.js';
import { origin, request } from './helpers/pool-harness.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

async function pair(targetPort: number, rcExtra: string[] = [], rsExtra: string[] = []): Promise<{ rc: Relay; rs: Relay; port: number; rsPort: number }> {
  const rs = await startRelay(['--accept', '127.0.0.1:0', '--allow', '127.0.0.1/32', ...rsExtra]);
  cleanups.push(() => rs.close());
  const rsPort = rs.addresses().accept?.port ?? assert.fail();
  const rc = await startRelay(['-L', `127.0.0.1:0:127.0.0.1:${targetPort}`, '--peer', `rs=127.0.0.1:${rsPort}`, '--route', '127.0.0.0/8=rs', ...rcExtra]);
  cleanups.push(() => rc.close());
  return { rc, rs, rsPort, port: rc.addresses().forward[0]?.port ?? assert.fail() };
}

const takes = (r: Relay): Promise<number> => r.metrics.registry.value('tcpsplit_pool_takes_total');

test('pool on: downloads through pooled legs arrive whole (SHA-256), and the metrics count the takes per peer', async () => {
  const payload = randomBytes(3 * 1024 * 1024);
  const sha = createHash('sha256').update(payload).digest('hex');
  const server = await tcpServer((s) => { s.end(payload); });
  cleanups.push(server.close);
  const { rc, rs, port } = await pair(server.port);
  await waitFor(() => (rc.poolStats()[0]?.size ?? 0) === 4 && rs.idleAccepted === 4);
  for (let i = 0; i < 8; i++) {
    const client = await dial(port);
    const got = await receiveAll(client);
    client.end();
    assert.equal(got.outcome, 'end');
    assert.equal(got.sha256, sha);
  }
  const taken = await takes(rc);
  assert.ok(taken >= 4, `takes ${taken}`);
  const page = await rc.metrics.registry.render();
  assert.match(page, /tcpsplit_pool_takes_total\{peer="rs"\} \d+/);
  assert.match(page, /tcpsplit_pool_size\{peer="rs"\} \d+/);
  assert.match(page, /tcpsplit_pool_misses_total\{peer="rs"\} \d+/);
  assert.match(page, /tcpsplit_pool_stale_total\{peer="rs"\} \d+/);
  assert.match(page, /tcpsplit_pool_refill_failures_total\{peer="rs"\} \d+/);
  await waitFor(() => rc.activeConnections === 0 && rs.activeConnections === 0).catch(async () => {
    assert.fail(`still active: rc ${rc.activeConnections}, rs ${rs.activeConnections} (idle ${rs.idleAccepted}, pending ${await rs.metrics.registry.value('tcpsplit_pending_headers')})`);
  });
});

test('--pool off: no pool, every peer leg dialled; R_S holds no idle connection', async () => {
  const server = await tcpServer((s) => { s.end('hello'); });
  cleanups.push(server.close);
  const { rc, rs, port } = await pair(server.port, ['--pool', 'off']);
  const client = await dial(port);
  const got = await receiveAll(client);
  client.end();
  assert.equal(got.outcome, 'end');
  assert.deepEqual(rc.poolStats(), []);
  assert.equal(rs.idleAccepted, 0);
});

test('R_S keeps authenticated idle pooled connections past the header deadline; unauthenticated ones are still reset at it', async () => {
  const server = await tcpServer((s) => { s.end('hello'); });
  cleanups.push(server.close);
  // 1 s, not less: a deadline starts at accept and a pooled leg's AUTH frame is read a loop
  // turn later, so a stall of the deadline's length would reset a pooled leg.
  const { rc, rs, rsPort, port } = await pair(server.port, [], ['--header-timeout', '1s']);
  await waitFor(() => rs.idleAccepted === 4);
  const silent = await dial(rsPort); // says nothing: pending, on the 1 s deadline
  const silentOutcome = receiveAll(silent);
  const t0 = performance.now();
  await sleep(3500); // three and a half header deadlines
  assert.equal((await silentOutcome).outcome, 'ECONNRESET');
  assert.ok(performance.now() - t0 >= 950);
  assert.equal(rs.idleAccepted, 4, 'the idle pooled connections are still there');
  const stats = rc.poolStats()[0];
  assert.equal(stats?.size, 4);
  assert.equal(stats.stale, 0);
  assert.equal(stats.refillFailures, 0);
  assert.equal(await rs.metrics.registry.value('tcpsplit_pending_headers'), 0, 'idle pooled connections are not pending');
  // And they still work.
  const client = await dial(port);
  assert.equal((await receiveAll(client)).outcome, 'end');
  client.end();
  assert.ok(await takes(rc) >= 1);
});

test('R_S restarted: its whole pool goes stale, and no client request fails or reaches the origin twice', async () => {
  const server = await origin();
  cleanups.push(() => server.close());
  const first = await pair(server.port);
  const { rc, rsPort, port } = first;
  await waitFor(() => (rc.poolStats()[0]?.size ?? 0) === 4);
  assert.equal(await request(port, 'before'), 'before');
  await waitFor(() => (rc.poolStats()[0]?.size ?? 0) >= 4);
  // Restart R_S on the same port.
  await first.rs.close();
  const rs2 = await startRelay(['--accept', `127.0.0.1:${rsPort}`, '--allow', '127.0.0.1/32']);
  cleanups.push(() => rs2.close());
  const n = 200;
  const bodies = Array.from({ length: n }, (_, i) => `request ${i} ${'y'.repeat(i * 7)}`);
  // In waves of 4 at once, starting at once: the first takes meet connections R_S's restart killed.
  for (let i = 0; i < n; i += 4) {
    const wave = bodies.slice(i, i + 4);
    const got = await Promise.all(wave.map((b) => request(port, b)));
    assert.deepEqual(got, wave);
  }
  await waitFor(() => server.seen.length >= n + 1);
  await sleep(100);
  assert.equal(server.seen.length, n + 1, 'the origin saw every request exactly once');
  assert.deepEqual([...server.seen].sort(), ['before', ...bodies].sort());
  const stats = rc.poolStats()[0];
  assert.ok(stats !== undefined && stats.stale >= 4, `stale ${stats?.stale}`);
  const failed = await rc.metrics.registry.value('tcpsplit_connections_closed_total') - await rc.metrics.registry.value('tcpsplit_connections_closed_total', { outcome: 'ok' });
  assert.equal(failed, 0);
});

test('root: pooled connections killed by ss -K while idle (the peer sends RST) are replaced invisibly: no client request fails, the origin sees each once',
  { skip: process.getuid?.() === 0 ? false : 'ss -K needs CAP_NET_ADMIN' }, async (t) => {
    const server = await origin();
    cleanups.push(() => server.close());
    const { rc, rsPort, port } = await pair(server.port);
    const size = (): number => rc.poolStats()[0]?.size ?? 0;
    await waitFor(() => size() >= 4);
    const bodies = Array.from({ length: 48 }, (_, i) => `killed ${i} ${'z'.repeat(i * 5)}`);
    let killed = 0;
    for (let i = 0; i < bodies.length; i += 4) {
      // Between waves only idle pooled connections are open to R_S: ss -K destroys R_S's
      // ends (SOCK_DESTROY: R_S's socket aborts and sends RST). On loopback R_C sees each
      // reset before its next take (three runs: 28 destroyed, 28 stale, 0 replaced after a
      // take); a leg that dies just after its take is test/pool-retry.test.ts's case.
      if (i % 12 === 0) {
        const out = execFileSync('ss', ['-K', '-tn', 'src', '127.0.0.1', 'sport', '=', `:${rsPort}`]).toString();
        killed += out.split('\n').filter((l) => l.startsWith('ESTAB')).length;
      }
      const wave = bodies.slice(i, i + 4);
      assert.deepEqual(await Promise.all(wave.map((b) => request(port, b))), wave);
    }
    await waitFor(() => server.seen.length >= bodies.length);
    await sleep(100);
    assert.equal(server.seen.length, bodies.length, 'the origin saw every request exactly once');
    assert.ok(killed >= 4, `ss -K destroyed ${killed} pooled connections`);
    const stats = rc.poolStats()[0];
    t.diagnostic(`ss -K destroyed ${killed} pooled connections; R_C counted ${stats?.stale} stale, replaced ${await rc.metrics.registry.value('tcpsplit_pool_retries_total')} after a take`);
    assert.ok(stats !== undefined && stats.stale >= 4, `stale ${stats?.stale} of ${killed} killed`);
    const failed = await rc.metrics.registry.value('tcpsplit_connections_closed_total') - await rc.metrics.registry.value('tcpsplit_connections_closed_total', { outcome: 'ok' });
    assert.equal(failed, 0);
  });

test('a reload switches the pool: off drains it (R_S sees its idle connections go), on starts it again', async () => {
  const server = await tcpServer((s) => { s.end('hello'); });
  cleanups.push(server.close);
  const { rc, rs } = await pair(server.port);
  await waitFor(() => rs.idleAccepted === 4);
  const { loadRelayConfig } = await import('../src/config/load-config.js');
  const { KEY_HEX } = await import('./helpers/net.js');
  const flags = (pool: string): string[] => ['-L', `127.0.0.1:0:127.0.0.1:${server.port}`, '--peer', `rs=127.0.0.1:${rs.addresses().accept?.port ?? 0}`,
    '--route', '127.0.0.0/8=rs', '--pool', pool];
  // Port 0 forwards are distinct listeners per reload; the pool is what this test looks at.
  await rc.reload((await loadRelayConfig(flags('off'), { TCPSPLIT_KEY: KEY_HEX })).config);
  assert.deepEqual(rc.poolStats(), []);
  await waitFor(() => rs.idleAccepted === 0);
  await rc.reload((await loadRelayConfig([...flags('on'), '--pool-low', '2'], { TCPSPLIT_KEY: KEY_HEX })).config);
  await waitFor(() => rs.idleAccepted === 2 && rc.poolStats()[0]?.size === 2);
});
