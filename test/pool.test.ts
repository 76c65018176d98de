/**
 * The connection pool on real loopback sockets: watermarks, refill, idle age, a peer that
 * restarts (the whole pool goes stale at once), a peer that is down (backoff), and the
 * R_S side: authenticated idle connections outlive the header deadline, unauthenticated
 * ones do not, a replayed AUTH frame is refused. No timing is asserted: waits are bounded
 * and only counts are checked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { encodeAuthFrame } from '../src/protocol/pool-frame-encoder.js';
import { PeerPool } from '../src/pool/peer-pool.js';
import { DEFAULT_POOL_TUNING } from '../src/pool/pool-options.js';
import { dialOpener, socketFactoryOpener } from '../src/pool/opener.js';
import { relayLegSocketOptions, DEFAULT_TURBO_TUNING } from '../src/turbo/turbo-options.js';
import { deadReason } from '../src/pool/liveness.js';
import { getSocketIntOption, socketFd } from '../src/sys/index.js';
import { ConfigError } from '../src/errors.js';
import { waitFor, freePort } from './helpers/net.js';
import { AUTH, listen, newPools, origin, peerAt, rcRelay, request, rsRelay } from './helpers/pool-harness.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

void test('the pool fills to the low watermark; pooled legs have Nagle off and keepalive on, and R_S holds them as authenticated idle', async (t) => {
  const rs = await rsRelay();
  const pools = newPools(rs.port, { lowWatermark: 3, highWatermark: 6 });
  t.after(async () => { pools.close(); await rs.close(); });
  pools.start();
  const pool = pools.get('rs');
  assert.ok(pool !== undefined);
  await waitFor(() => pool.stats().size === 3 && rs.source.idleCount() === 3);
  await sleep(50);
  assert.equal(pool.stats().size, 3, 'no more than the low watermark without demand');
  assert.equal(pool.stats().opened, 3);
  assert.equal(rs.idled(), 3);
  const taken = pool.take();
  assert.ok(taken !== undefined);
  const fd = socketFd(taken.socket);
  assert.ok(fd !== undefined);
  assert.equal(getSocketIntOption(fd, 'TCP_NODELAY'), 1);
  assert.equal(getSocketIntOption(fd, 'SO_KEEPALIVE'), 1);
  taken.socket.destroy();
});

void test('a take triggers a refill; misses raise the target toward the high watermark; requests through R_C use pooled legs', async (t) => {
  const o = await origin();
  const rs = await rsRelay();
  const pools = newPools(rs.port, { lowWatermark: 2, highWatermark: 4 });
  const rc = await rcRelay(pools, peerAt(rs.port), { host: '127.0.0.1', port: o.port });
  t.after(async () => { pools.close(); await rc.close(); await rs.close(); await o.close(); });
  pools.start();
  const pool = pools.get('rs');
  assert.ok(pool !== undefined);
  await waitFor(() => pool.stats().size === 2);

  assert.equal(await request(rc.port, 'one'), 'one');
  assert.equal(pool.stats().takes, 1);
  await waitFor(() => pool.stats().size === 2 && pool.stats().opened === 3);

  // Empty the pool by hand: the next take misses, and the target grows by one.
  const held = [pool.take(), pool.take()];
  assert.equal(pool.take(), undefined);
  assert.equal(pool.stats().misses, 1);
  assert.equal(pool.stats().target, 3);
  await waitFor(() => pool.stats().size === 3);
  for (const h of held) h?.socket.destroy();

  const bodies = Array.from({ length: 8 }, (_, i) => `req-${i}-${'x'.repeat(i * 100)}`);
  const replies = await Promise.all(bodies.map((b) => request(rc.port, b)));
  assert.deepEqual(replies, bodies);
  assert.deepEqual([...o.seen].sort(), [...bodies, 'one'].sort(), 'each request reached the origin exactly once');
  assert.ok(pool.stats().target <= 4);
  assert.ok(rc.records.every((r) => r.outcome === 'ok'), JSON.stringify(rc.records.map((r) => r.outcome)));
});

void test('retune (a run-time change of watermarks): ready connections stay, the pool grows to a higher low watermark and shrinks to a lower high one, bad values change nothing', async (t) => {
  const rs = await rsRelay();
  const pools = newPools(rs.port, { lowWatermark: 3, highWatermark: 6 });
  t.after(async () => { pools.close(); await rs.close(); });
  pools.start();
  const pool = pools.get('rs');
  assert.ok(pool !== undefined);
  await waitFor(() => pool.stats().size === 3);
  pools.retune(() => ({ lowWatermark: 5, highWatermark: 8, maxIdleMs: 60_000 }));
  await waitFor(() => pool.stats().size === 5);
  assert.equal(pool.stats().opened, 5, 'the 3 ready connections were kept: only 2 more opened');
  pools.retune(() => ({ lowWatermark: 1, highWatermark: 2, maxIdleMs: 60_000 }));
  assert.equal(pool.stats().size, 2, 'the oldest ready ones above the new high watermark are closed at once');
  assert.equal(pool.stats().target, 2);
  await sleep(50);
  assert.equal(pool.stats().opened, 5, 'nothing reopened');
  assert.throws(() => { pools.retune(() => ({ lowWatermark: 4, highWatermark: 2, maxIdleMs: 60_000 })); }, ConfigError);
  assert.equal(pool.stats().size, 2);
  assert.equal(pool.stats().target, 2);
});

void test('connections older than the max idle age are closed, never handed out, and replaced', async (t) => {
  const rs = await rsRelay();
  const pools = newPools(rs.port, { lowWatermark: 2, highWatermark: 4, maxIdleMs: 150 });
  t.after(async () => { pools.close(); await rs.close(); });
  pools.start();
  const pool = pools.get('rs');
  assert.ok(pool !== undefined);
  await waitFor(() => pool.stats().size === 2);
  await waitFor(() => pool.stats().expired >= 2 && pool.stats().size === 2);
  assert.ok(pool.stats().opened >= 4);
  assert.equal(pool.stats().stale, 0);
  await waitFor(() => rs.outcomes.filter((c) => c === 'TCPSPLIT_ERR_IDLE_CLOSED').length >= 2);
  // Polled: a take after a stall as long as the idle age finds only expired entries (and rightly none).
  let taken: ReturnType<typeof pool.take>;
  await waitFor(() => (taken = pool.take()) !== undefined);
  assert.ok(taken !== undefined);
  assert.ok(taken.idleMs < 150, `handed out after ${taken.idleMs} ms idle`);
  taken.socket.destroy();
});

void test('dead on take: a pooled connection whose peer closed is not handed out, even before Node has read the FIN', async (t) => {
  const rs = await rsRelay();
  const pools = newPools(rs.port, { lowWatermark: 3, highWatermark: 3, healthyAfterMs: 0 });
  t.after(async () => { pools.close(); await rs.close(); });
  pools.start();
  const pool = pools.get('rs');
  assert.ok(pool !== undefined);
  await waitFor(() => pool.stats().size === 3 && rs.sockets.size === 3);
  // Close R_S's ends and take in the same turn of the event loop: only the kernel knows.
  for (const s of rs.sockets) s.destroy();
  assert.equal(pool.take(), undefined);
  const s = pool.stats();
  assert.equal(s.stale, 3);
  assert.equal(s.misses, 1);
  assert.equal(s.takes, 0);
});

void test('a peer restart makes the whole pool stale; requests fall back to fresh connects, none fails, no byte is duplicated', async (t) => {
  const o = await origin();
  let rs = await rsRelay();
  const port = rs.port;
  const pools = newPools(port, { lowWatermark: 4, highWatermark: 8 });
  const rc = await rcRelay(pools, peerAt(port), { host: '127.0.0.1', port: o.port });
  t.after(async () => { pools.close(); await rc.close(); await rs.close(); await o.close(); });
  pools.start();
  const pool = pools.get('rs');
  assert.ok(pool !== undefined);
  await waitFor(() => pool.stats().size === 4);

  await rs.close();
  rs = await rsRelay({ port });
  const bodies = Array.from({ length: 40 }, (_, i) => `after-restart-${i}`);
  const replies = await Promise.all(bodies.map((b) => request(rc.port, b)));
  assert.deepEqual(replies, bodies);
  assert.deepEqual([...o.seen].sort(), [...bodies].sort(), 'every request reached the origin exactly once');
  assert.ok(rc.records.every((r) => r.outcome === 'ok'), JSON.stringify(rc.records.map((r) => r.outcome)));
  const s = pool.stats();
  assert.equal(s.stale, 4, JSON.stringify(s));
  assert.ok(s.misses >= 1);
  // The pool refills against the restarted peer, and later requests take from it.
  await waitFor(() => pool.stats().size >= 4);
  const before = pool.stats().takes;
  assert.equal(await request(rc.port, 'later'), 'later');
  assert.equal(pool.stats().takes, before + 1);
});

void test('a peer that is down: refills back off exponentially (bounded attempts), takes miss, and the pool fills once it is up', async (t) => {
  const port = await freePort();
  const pool = new PeerPool(peerAt(port), {
    ...DEFAULT_POOL_TUNING, lowWatermark: 2, highWatermark: 2, backoffInitialMs: 20, backoffMaxMs: 80, auth: AUTH, opener: dialOpener,
  });
  t.after(() => { pool.close(); });
  pool.start();
  await waitFor(() => pool.stats().backoffFailures >= 4, 5000);
  assert.equal(pool.take(), undefined);
  await sleep(300);
  const s = pool.stats();
  // Without backoff a refused loopback connect is redialled thousands of times a second.
  assert.ok(s.opened <= 2 * (s.backoffFailures + 1), JSON.stringify(s));
  assert.ok(s.refillFailures >= s.backoffFailures);
  assert.ok(s.opened < 60, `opened ${s.opened} connections while the peer was down`);

  const rs = await rsRelay({ port });
  t.after(async () => { await rs.close(); });
  await waitFor(() => pool.stats().size === 2, 3000);
  const taken = pool.take();
  assert.ok(taken !== undefined);
  assert.equal(pool.stats().backoffFailures, 0);
  taken.socket.destroy();
});

void test('a peer that resets every pooled connection (wrong key) is backed off, not redialled in a loop', async (t) => {
  const rs = await listen((s) => { s.once('data', () => { s.resetAndDestroy(); }); });
  const pool = new PeerPool(peerAt(rs.port), {
    ...DEFAULT_POOL_TUNING, lowWatermark: 2, highWatermark: 2, backoffInitialMs: 20, backoffMaxMs: 80, auth: AUTH, opener: dialOpener,
  });
  t.after(async () => { pool.close(); await rs.close(); });
  pool.start();
  await waitFor(() => pool.stats().backoffFailures >= 3, 5000);
  await sleep(300);
  const s = pool.stats();
  assert.ok(s.opened < 60, JSON.stringify(s));
  // A redial may be open for the moment before the peer resets it: between tries the
  // pool holds nothing (a momentary read of size could race one such connection).
  await waitFor(() => pool.stats().size === 0, 2000);
});

void test('pool tuning is validated', () => {
  assert.throws(() => new PeerPool(peerAt(1), { ...DEFAULT_POOL_TUNING, lowWatermark: 5, highWatermark: 4, auth: AUTH, opener: dialOpener }), ConfigError);
  assert.throws(() => new PeerPool(peerAt(1), { ...DEFAULT_POOL_TUNING, maxIdleMs: 0, auth: AUTH, opener: dialOpener }), ConfigError);
});

// ---- R_S: authenticated idle connections --------------------------------------------

/** Resolves when the socket has closed (events.once would reject on the reset's 'error'). */
const closed = (s: Socket): Promise<void> => new Promise((r) => { if (s.destroyed) r(); else s.once('close', () => { r(); }); });

async function raw(port: number): Promise<Socket> {
  const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  s.on('error', () => undefined);
  await once(s, 'connect');
  return s;
}

void test('R_S keeps authenticated idle connections past the header deadline, and resets unauthenticated ones on it', async (t) => {
  const o = await origin();
  // 500 ms, not less: the deadline starts at accept and the AUTH frame is read a loop turn
  // later, so a stall of the deadline's length (GC, a starved host) would reset a pool leg.
  const rs = await rsRelay({ headerTimeoutMs: 500 });
  const pools = newPools(rs.port, { lowWatermark: 2, highWatermark: 2 });
  const rc = await rcRelay(pools, peerAt(rs.port), { host: '127.0.0.1', port: o.port });
  t.after(async () => { pools.close(); await rc.close(); await rs.close(); await o.close(); });
  pools.start();
  const pool = pools.get('rs');
  assert.ok(pool !== undefined);
  await waitFor(() => pool.stats().size === 2 && rs.idled() === 2);

  const silent = await raw(rs.port);
  const halfAuth = await raw(rs.port);
  halfAuth.write(encodeAuthFrame(AUTH).bytes.subarray(0, 40));
  await Promise.all([closed(silent), closed(halfAuth)]);
  await sleep(1500); // three header deadlines
  assert.deepEqual(rs.outcomes, ['TCPSPLIT_ERR_HEADER_TIMEOUT', 'TCPSPLIT_ERR_HEADER_TIMEOUT']);
  assert.equal(pool.stats().stale, 0);
  assert.equal(rs.source.idleCount('127.0.0.1'), 2);
  assert.equal(await request(rc.port, 'still there'), 'still there');
  assert.equal(pool.stats().takes, 1);
});

void test('R_S refuses a replayed AUTH frame, and an idle connection beyond the per-peer limit', async (t) => {
  const rs = await rsRelay({ maxIdlePerPeer: 2 });
  t.after(async () => { await rs.close(); });
  const frame = encodeAuthFrame(AUTH).bytes;
  const a = await raw(rs.port);
  a.write(frame);
  await waitFor(() => rs.idled() === 1);
  const replayed = await raw(rs.port);
  replayed.write(frame);
  await closed(replayed);
  assert.deepEqual(rs.outcomes, ['TCPSPLIT_ERR_REPLAY']);

  const b = await raw(rs.port);
  b.write(encodeAuthFrame(AUTH).bytes);
  await waitFor(() => rs.idled() === 2);
  const c = await raw(rs.port);
  c.write(encodeAuthFrame(AUTH).bytes);
  await closed(c);
  assert.deepEqual(rs.outcomes, ['TCPSPLIT_ERR_REPLAY', 'TCPSPLIT_ERR_IDLE_LIMIT']);
  assert.equal(rs.source.idleCount(), 2);
  a.end();
  await waitFor(() => rs.source.idleCount() === 1);
  assert.deepEqual(rs.outcomes.at(-1), 'TCPSPLIT_ERR_IDLE_CLOSED');
  b.destroy();
  await waitFor(() => rs.source.idleCount() === 0);
});

void test('deadReason: alive, ended and destroyed sockets', async (t) => {
  const server = await listen(() => undefined);
  t.after(async () => { await server.close(); });
  const s = await raw(server.port);
  await waitFor(() => server.sockets.size === 1);
  assert.equal(deadReason(s), undefined);
  for (const peer of server.sockets) peer.end();
  await waitFor(() => deadReason(s) !== undefined);
  s.destroy();
  assert.equal(deadReason(s), 'destroyed');
});

void test('the socket-factory opener: pooled legs get Turbo-Start buffers set before connect', async (t) => {
  const rs = await rsRelay();
  const opener = socketFactoryOpener(relayLegSocketOptions({ ...DEFAULT_TURBO_TUNING, socketBufferBytes: 1024 * 1024 }));
  const pool = new PeerPool(peerAt(rs.port), { ...DEFAULT_POOL_TUNING, lowWatermark: 2, highWatermark: 2, auth: AUTH, opener });
  t.after(async () => { pool.close(); await rs.close(); });
  pool.start();
  await waitFor(() => pool.stats().size === 2 && rs.idled() === 2);
  const taken = pool.take();
  assert.ok(taken !== undefined);
  const fd = socketFd(taken.socket);
  assert.ok(fd !== undefined);
  // The kernel stores twice the value set (capped by net.core.rmem_max).
  assert.ok(getSocketIntOption(fd, 'SO_RCVBUF') >= 1024 * 1024);
  assert.equal(getSocketIntOption(fd, 'TCP_NODELAY'), 1);
  assert.equal(getSocketIntOption(fd, 'SO_KEEPALIVE'), 1);
  taken.socket.destroy();
});

void test('R_S closes an authenticated idle connection that outlives its backstop (a sender gone without a FIN)', async (t) => {
  // The header deadline well above the backstop: it is the backstop that must close it.
  const rs = await rsRelay({ idleBackstopMs: 100, headerTimeoutMs: 1000 });
  t.after(async () => { await rs.close(); });
  const s = await raw(rs.port);
  s.write(encodeAuthFrame(AUTH).bytes);
  await closed(s);
  assert.deepEqual(rs.outcomes, ['TCPSPLIT_ERR_IDLE_CLOSED']);
  assert.equal(rs.idled(), 1);
  assert.equal(rs.source.idleCount(), 0);
});
