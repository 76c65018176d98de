/**
 * A pooled leg found dead on first use (issue 9): replaced by a fresh leg without the
 * client noticing and without a duplicated byte at the origin, but only while the peer has
 * acknowledged nothing written on it (src/pool/first-use.ts). Real sockets on loopback,
 * R_S from the pool harness; the take's liveness check is passed by resetting R_S's end
 * right after the take, as a reset still in flight would.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { DialingLegFactory } from '../src/relay/leg-factory.js';
import { SplitConnection, type ConnectionRecord } from '../src/relay/split-connection.js';
import { PooledLegFactory } from '../src/pool/pooled-leg-factory.js';
import { resetSocket } from '../src/sys/index.js';
import { AUTH, listen, newPools, origin, peerAt, rsRelay, type Tracked } from './helpers/pool-harness.js';
import { waitFor } from './helpers/net.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

function noop(): void { /* outcomes are asserted instead */ }

/** One client request through a SplitConnection whose upstream is `leg`; resolves with what the client got and the record. */
async function throughLeg(leg: ReturnType<PooledLegFactory['open']>, target: { host: string; port: number }, body: string, beforeAttach: () => void = noop): Promise<{ got: string; outcome: string; record: ConnectionRecord }> {
  let resolveRecord: (r: ConnectionRecord) => void = noop;
  const recorded = new Promise<ConnectionRecord>((r) => { resolveRecord = r; });
  const front: Tracked = await listen((s) => {
    const conn = SplitConnection.accepted(s, {
      id: 1, kind: 'forward', target, timeouts: { connectTimeoutMs: 5000, idleTimeoutMs: 10_000 }, onClose: (_c, r) => { resolveRecord(r); },
    });
    beforeAttach();
    conn.attachUpstream(leg.socket, leg.via, leg.preamble, leg.retry);
  });
  cleanups.push(() => front.close());
  const client: Socket = connect({ host: '127.0.0.1', port: front.port, allowHalfOpen: true });
  const parts: Buffer[] = [];
  client.on('data', (d: Buffer) => parts.push(d));
  client.end(body);
  const outcome = await new Promise<string>((resolve) => {
    client.on('error', (err: NodeJS.ErrnoException) => { resolve(err.code ?? err.message); });
    client.on('end', () => { resolve('end'); });
  });
  client.destroy();
  return { got: Buffer.concat(parts).toString(), outcome, record: await recorded };
}

test('a pooled leg reset before it acknowledged anything is replaced: the client gets its answer, the origin sees the request once', async () => {
  const server = await origin();
  cleanups.push(() => server.close());
  const rs = await rsRelay();
  cleanups.push(() => rs.close());
  const pools = newPools(rs.port, { lowWatermark: 2, highWatermark: 2 });
  cleanups.push(() => { pools.close(); });
  pools.start();
  await waitFor(() => rs.idled() === 2 && (pools.get('rs')?.stats().size ?? 0) === 2);
  const retried: string[] = [];
  const legs = new PooledLegFactory(pools, new DialingLegFactory({ keepaliveMs: 10_000, auth: AUTH }), AUTH, (peer) => retried.push(peer));
  const target = { host: '127.0.0.1', port: server.port };
  const leg = legs.open({ target, route: { kind: 'peer', peer: peerAt(rs.port) }, policy: undefined, onDenied: noop });
  assert.ok(leg.retry !== undefined, 'a taken leg carries its retry');
  // R_S's end of the taken connection dies with a reset that R_C's kernel has but Node has
  // not read yet when the TARGET frame is written: the same tick, as when a peer restarts.
  const far = [...rs.sockets].find((s) => s.remotePort === leg.socket.localPort);
  assert.ok(far !== undefined);
  const body = `GET /once HTTP/1.0\r\n\r\n${'x'.repeat(1000)}`;
  const { got, outcome, record } = await throughLeg(leg, target, body, () => { resetSocket(far); });
  assert.equal(outcome, 'end');
  assert.equal(got, body);
  assert.equal(record.outcome, 'ok');
  assert.equal(record.retries, 1);
  assert.deepEqual(retried, ['rs']);
  await waitFor(() => server.seen.length >= 1);
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(server.seen, [body], 'the origin saw the request exactly once');
});

test('a pooled leg whose TARGET frame was acknowledged is not replaced: a later reset reaches the client as a reset', async () => {
  const server = await origin();
  const deadPort = server.port;
  await server.close(); // R_S's connect to the target is refused, after it read the TARGET frame
  const rs = await rsRelay();
  cleanups.push(() => rs.close());
  const pools = newPools(rs.port, { lowWatermark: 1, highWatermark: 1 });
  cleanups.push(() => { pools.close(); });
  pools.start();
  await waitFor(() => rs.idled() === 1 && (pools.get('rs')?.stats().size ?? 0) === 1);
  const retried: string[] = [];
  const legs = new PooledLegFactory(pools, new DialingLegFactory({ keepaliveMs: 10_000, auth: AUTH }), AUTH, (peer) => retried.push(peer));
  const target = { host: '127.0.0.1', port: deadPort };
  const leg = legs.open({ target, route: { kind: 'peer', peer: peerAt(rs.port) }, policy: undefined, onDenied: noop });
  const { outcome, record } = await throughLeg(leg, target, 'GET / HTTP/1.0\r\n\r\n');
  assert.equal(outcome, 'ECONNRESET');
  assert.notEqual(record.outcome, 'ok');
  assert.equal(record.retries, undefined);
  assert.deepEqual(retried, []);
});
