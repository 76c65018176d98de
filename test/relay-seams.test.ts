import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { ForwardTargetSource, HeaderTargetSource, type TargetSource } from '../src/relay/target-source.js';
import { DialingLegFactory } from '../src/relay/leg-factory.js';
import { AddressPolicy } from '../src/net/address-policy.js';
import { HeaderAuth } from '../src/protocol/header-auth.js';
import { ReplayGuard } from '../src/protocol/replay-guard.js';
import { encodeHeader } from '../src/protocol/header-encoder.js';
import { HeaderAuthError, HeaderReplayError, PolicyDeniedError } from '../src/errors.js';
import { tcpServer } from './helpers/net.js';

/** Target sources and the leg factory: the seams that interception, early SYN and the pool plug into. */

async function acceptedSocket(): Promise<{ client: Socket; accepted: Socket; close: () => Promise<void> }> {
  let take!: (s: Socket) => void;
  const got = new Promise<Socket>((r) => { take = r; });
  const srv = await tcpServer((s) => { take(s); });
  const client = connect({ port: srv.port, host: '127.0.0.1', allowHalfOpen: true });
  client.on('error', () => undefined);
  return { client, accepted: await got, close: async () => { client.destroy(); await srv.close(); } };
}

describe('target sources', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => { for (const c of cleanups.reverse()) await c(); });
  const auth = new HeaderAuth(randomBytes(32));

  it('a forward listener knows its target at the SYN, without reading the socket', () => {
    const source: TargetSource = new ForwardTargetSource({ host: '192.0.2.7', port: 443 });
    assert.equal(source.knownAtSyn, true);
    assert.deepEqual(source.targetOf(undefined as unknown as Socket), { target: { host: '192.0.2.7', port: 443 }, requestedByPeer: false });
  });

  it('a relay header gives the target, the nonce and leaves the bytes after it on the socket', async () => {
    const pair = await acceptedSocket();
    cleanups.push(pair.close);
    const source = new HeaderTargetSource({ auth, replay: new ReplayGuard({ maxClockSkewMs: 30_000 }), headerTimeoutMs: 5000 });
    assert.equal(source.knownAtSyn, false);
    const nonce = randomBytes(16);
    const bytes = encodeHeader({ host: 'example.test', port: 8080 }, auth, Date.now(), Buffer.from('GET /'), nonce);
    // Split across two writes: the decoder is incremental.
    pair.client.write(bytes.subarray(0, 7));
    setTimeout(() => { pair.client.write(bytes.subarray(7)); }, 20);
    const destination = await source.targetOf(pair.accepted);
    assert.deepEqual(destination.target, { host: 'example.test', port: 8080 });
    assert.equal(destination.requestedByPeer, true);
    assert.deepEqual(destination.nonce, nonce);
    assert.deepEqual(pair.accepted.read(), Buffer.from('GET /'));
  });

  it('a header signed with another key, or replayed, rejects with its error', async () => {
    const replay = new ReplayGuard({ maxClockSkewMs: 30_000 });
    const source = new HeaderTargetSource({ auth, replay, headerTimeoutMs: 5000 });
    const forged = await acceptedSocket();
    cleanups.push(forged.close);
    forged.client.write(encodeHeader({ host: '192.0.2.1', port: 80 }, new HeaderAuth(randomBytes(32))));
    await assert.rejects(source.targetOf(forged.accepted), HeaderAuthError);
    const header = encodeHeader({ host: '192.0.2.1', port: 80 }, auth);
    const first = await acceptedSocket();
    const second = await acceptedSocket();
    cleanups.push(first.close, second.close);
    first.client.write(header);
    await source.targetOf(first.accepted);
    second.client.write(header);
    await assert.rejects(source.targetOf(second.accepted), HeaderReplayError);
  });
});

describe('dialling leg factory', () => {
  it('refuses a denied IP literal before connecting, and counts it', () => {
    const legs = new DialingLegFactory({ keepaliveMs: 0, auth: undefined });
    const denied: string[] = [];
    assert.throws(() => legs.open({
      // Loopback, so a policy that failed to deny would connect nowhere else.
      target: { host: '127.0.0.1', port: 9 }, route: { kind: 'direct' },
      policy: new AddressPolicy({ deny: ['127.0.0.0/8'] }), onDenied: (rule) => { denied.push(rule); },
    }), PolicyDeniedError);
    assert.equal(denied.length, 1);
  });

  it('a direct leg writes only the early bytes; a peer leg writes the header first', async () => {
    const received: Buffer[] = [];
    const srv = await tcpServer((s) => { s.on('data', (c: Buffer) => { received.push(c); }); });
    after(srv.close);
    const auth = new HeaderAuth(randomBytes(32));
    const legs = new DialingLegFactory({ keepaliveMs: 1000, auth });
    const target = { host: '127.0.0.1', port: srv.port };
    const direct = legs.open({ target, route: { kind: 'direct' }, policy: undefined, onDenied: () => undefined });
    assert.deepEqual({ via: direct.via, route: direct.route }, { via: 'direct', route: 'direct' });
    await once(direct.socket, 'connect');
    direct.preamble(Buffer.from('hi'));
    const peer = legs.open({
      target: { host: '192.0.2.3', port: 22 }, policy: undefined, onDenied: () => undefined,
      route: { kind: 'peer', peer: { name: 'rs', endpoint: target } },
    });
    assert.deepEqual({ via: peer.via, route: peer.route }, { via: 'rs', route: 'peer' });
    await once(peer.socket, 'connect');
    peer.preamble(null);
    const expected = encodeHeader({ host: '192.0.2.3', port: 22 }, auth).length;
    const deadline = Date.now() + 5000;
    while (received.reduce((n, c) => n + c.length, 0) < 2 + expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(received.reduce((n, c) => n + c.length, 0), 2 + expected);
    direct.socket.destroy();
    peer.socket.destroy();
  });
});
