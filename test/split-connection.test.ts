import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { SplitConnection, clientOf, type ConnectionRecord, type SplitConnectionOptions } from '../src/relay/split-connection.js';
import { streamForwarder } from '../src/dataplane/stream-forwarder.js';
import type { Forwarder } from '../src/dataplane/forwarder.js';
import { UnpairedError } from '../src/errors.js';
import { tcpServer, sendRandom, receiveAll, MiB, type Received } from './helpers/net.js';

/** A listener whose accepted sockets are handed out in order: the downstream halves. */
async function acceptQueue() {
  const waiting: ((s: Socket) => void)[] = [];
  const ready: Socket[] = [];
  const srv = await tcpServer((socket) => {
    const take = waiting.shift();
    if (take === undefined) ready.push(socket);
    else take(socket);
  });
  const next = (): Promise<Socket> => {
    const s = ready.shift();
    return s === undefined ? new Promise((r) => { waiting.push(r); }) : Promise.resolve(s);
  };
  return { ...srv, next };
}

/**
 * An origin that speaks first (`greeting` bytes, like SSH or SMTP), then reads the request
 * to its EOF, answers `reply` bytes and ends: both directions and both half-closes are used.
 */
async function originServer(greeting: number, reply: number) {
  const seen: Promise<{ received: Received; sent: string[] }>[] = [];
  const resets: string[] = [];
  const srv = await tcpServer((socket) => {
    socket.on('error', (err: NodeJS.ErrnoException) => { resets.push(err.code ?? err.message); });
    seen.push((async () => {
      const receiving = receiveAll(socket);
      const first = await sendRandom(socket, greeting);
      const received = await receiving;
      if (received.outcome !== 'end') return { received, sent: [first] };
      const second = await sendRandom(socket, reply);
      socket.end();
      return { received, sent: [first, second] };
    })());
  });
  return { ...srv, seen, resets };
}

function dialLoopback(port: number): Socket {
  return connect({ port, host: '127.0.0.1', allowHalfOpen: true });
}

function recorder(): { onClose: SplitConnectionOptions['onClose']; records: ConnectionRecord[]; closed: Promise<ConnectionRecord> } {
  const records: ConnectionRecord[] = [];
  let done!: (r: ConnectionRecord) => void;
  const closed = new Promise<ConnectionRecord>((r) => { done = r; });
  return { records, closed, onClose: (_c, record) => { records.push(record); done(record); } };
}

const TIMEOUTS = { connectTimeoutMs: 5000, idleTimeoutMs: 30_000 };
const TARGET = { host: '127.0.0.1', port: 1 };

describe('split connection: pairing two halves in either order (real loopback sockets)', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => { for (const c of cleanups.reverse()) await c(); });

  it('downstream first, then the upstream half (today\'s path): bytes, half-closes and one record', async () => {
    const origin = await originServer(64 * 1024, 512 * 1024);
    const front = await acceptQueue();
    cleanups.push(origin.close, front.close);
    const rec = recorder();
    const client = dialLoopback(front.port);
    client.on('error', () => undefined);
    const down = await front.next();
    const conn = SplitConnection.accepted(down, { id: 1, kind: 'forward', target: TARGET, timeouts: TIMEOUTS, onClose: rec.onClose });
    assert.equal(conn.client, clientOf(down));
    assert.equal(conn.paired, false);
    const receiving = receiveAll(client);
    const request = await sendRandom(client, 1 * MiB);
    client.end();
    conn.attachUpstream(dialLoopback(origin.port), 'direct', (early) => { if (early !== null) conn.upstream?.write(early); });
    assert.equal(conn.paired, true);
    const [got, record] = await Promise.all([receiving, rec.closed]);
    const [served] = await Promise.all(origin.seen);
    assert.ok(served !== undefined);
    assert.equal(served.received.sha256, request, 'the request arrived whole');
    assert.equal(got.outcome, 'end');
    assert.equal(got.bytes, 64 * 1024 + 512 * 1024);
    assert.equal(record.outcome, 'ok');
    assert.equal(record.up, 1 * MiB);
    assert.equal(record.down, 64 * 1024 + 512 * 1024);
    assert.equal(record.via, 'direct');
    assert.equal(record.target, '127.0.0.1:1');
    assert.ok(record.ttfbMs !== undefined && record.connectMs !== undefined);
    assert.equal(rec.records.length, 1, 'exactly one record');
  });

  it('upstream first (an early leg, already connected and already sent to), then the accepted socket', async () => {
    const origin = await originServer(32 * 1024, 256 * 1024);
    const front = await acceptQueue();
    cleanups.push(origin.close, front.close);
    const rec = recorder();
    const conn = new SplitConnection({ id: 2, kind: 'forward', client: 'early', target: TARGET, timeouts: TIMEOUTS, onClose: rec.onClose });
    const up = dialLoopback(origin.port);
    conn.attachUpstream(up, 'direct');
    await once(up, 'connect');
    // Let the origin's greeting arrive before the client exists: it must wait, not be lost.
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(conn.upstreamConnected, true);
    assert.equal(conn.paired, false);
    const client = dialLoopback(front.port);
    client.on('error', () => undefined);
    const receiving = receiveAll(client);
    conn.attachDownstream(await front.next());
    const request = await sendRandom(client, 300 * 1024);
    client.end();
    const [got, record] = await Promise.all([receiving, rec.closed]);
    const [served] = await Promise.all(origin.seen);
    assert.equal(served?.received.sha256, request);
    assert.equal(got.outcome, 'end');
    assert.equal(got.bytes, 32 * 1024 + 256 * 1024);
    assert.deepEqual({ outcome: record.outcome, up: record.up, down: record.down, client: record.client },
      { outcome: 'ok', up: 300 * 1024, down: 32 * 1024 + 256 * 1024, client: 'early' });
    assert.equal(rec.records.length, 1);
  });

  it('an early leg still connecting when the accepted socket comes', async () => {
    const origin = await originServer(1, 1000);
    const front = await acceptQueue();
    cleanups.push(origin.close, front.close);
    const rec = recorder();
    const conn = new SplitConnection({ id: 3, kind: 'accept', client: 'early', timeouts: TIMEOUTS, onClose: rec.onClose });
    const client = dialLoopback(front.port);
    client.on('error', () => undefined);
    const down = await front.next();
    const up = dialLoopback(origin.port);
    conn.attachUpstream(up, 'peer-x');
    assert.equal(up.connecting, true);
    conn.attachDownstream(down);
    conn.setTarget(TARGET);
    assert.throws(() => { conn.setTarget(TARGET); }, /already set/);
    const receiving = receiveAll(client);
    client.end('hello');
    const [got, record] = await Promise.all([receiving, rec.closed]);
    assert.equal(got.bytes, 1001);
    assert.deepEqual({ outcome: record.outcome, up: record.up, via: record.via, target: record.target },
      { outcome: 'ok', up: 5, via: 'peer-x', target: '127.0.0.1:1' });
  });
});

describe('split connection: a reset is passed on as a reset (upstream first)', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => { for (const c of cleanups.reverse()) await c(); });

  it('an origin that resets mid-response after pairing resets the client, and the record says so', async () => {
    const origin = await tcpServer((s) => {
      s.once('data', () => { s.write(Buffer.alloc(64 * 1024)); setTimeout(() => { s.resetAndDestroy(); }, 20); });
    });
    const front = await acceptQueue();
    cleanups.push(origin.close, front.close);
    const rec = recorder();
    const conn = new SplitConnection({ id: 7, kind: 'forward', client: 'early', target: TARGET, timeouts: TIMEOUTS, onClose: rec.onClose });
    const up = dialLoopback(origin.port);
    conn.attachUpstream(up, 'direct');
    await once(up, 'connect');
    const client = dialLoopback(front.port);
    const receiving = receiveAll(client);
    conn.attachDownstream(await front.next());
    client.write('request');
    const [got, record] = await Promise.all([receiving, rec.closed]);
    assert.equal(got.outcome, 'ECONNRESET', 'the client sees a reset, not a clean end');
    assert.equal(record.outcome, 'TCPSPLIT_ERR_RESET');
    assert.equal(record.up, 7);
  });
});

describe('split connection: a half that never gets its partner', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => { for (const c of cleanups.reverse()) await c(); });

  it('a lone upstream half is reset when the pairing timeout passes, recorded and counted as UNPAIRED', async () => {
    const origin = await originServer(0, 0);
    cleanups.push(origin.close);
    const rec = recorder();
    const conn = new SplitConnection({
      id: 4, kind: 'forward', client: 'early', target: TARGET, timeouts: { ...TIMEOUTS, pairTimeoutMs: 100 }, onClose: rec.onClose,
    });
    conn.attachUpstream(dialLoopback(origin.port), 'direct');
    const record = await rec.closed;
    assert.equal(record.outcome, UnpairedError.code);
    assert.match(record.error ?? '', /downstream/);
    const [served] = await Promise.all(origin.seen);
    assert.equal(served?.received.outcome, 'ECONNRESET', 'the origin sees a reset, not a clean end');
    assert.equal(rec.records.length, 1);
  });

  it('a lone accepted socket is reset when the pairing timeout passes; a half that comes later is reset too', async () => {
    const origin = await originServer(0, 0);
    const front = await acceptQueue();
    cleanups.push(origin.close, front.close);
    const rec = recorder();
    const client = dialLoopback(front.port);
    const receiving = receiveAll(client);
    const conn = SplitConnection.accepted(await front.next(), {
      id: 5, kind: 'forward', target: TARGET, timeouts: { ...TIMEOUTS, pairTimeoutMs: 100 }, onClose: rec.onClose,
    });
    const [got, record] = await Promise.all([receiving, rec.closed]);
    assert.equal(record.outcome, UnpairedError.code);
    assert.match(record.error ?? '', /upstream/);
    assert.equal(got.outcome, 'ECONNRESET', 'the client sees a reset, not an empty complete response');
    const late = dialLoopback(origin.port);
    conn.attachUpstream(late, 'direct');
    await once(late, 'close');
    assert.equal(rec.records.length, 1, 'the late half adds no record');
  });
});

describe('split connection: the record comes from the forwarder', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => { for (const c of cleanups.reverse()) await c(); });

  it('up, down and the first byte are what the forwarder reports, not what the sockets read', async () => {
    const origin = await originServer(10, 20);
    const front = await acceptQueue();
    cleanups.push(origin.close, front.close);
    // Forwards with Node streams, but reports made-up numbers: a data plane that never
    // passes bytes through Node (splice) must be what the record shows.
    const reporting: Forwarder = {
      name: 'reporting',
      open(downstream, upstream, sink) {
        const inner = streamForwarder.open(downstream, upstream, sink);
        return {
          upBytes: 12_345, downBytes: 678, firstByteAt: 0,
          takeEarly: () => inner.takeEarly(), start: () => { inner.start(); },
        };
      },
    };
    const rec = recorder();
    const client = dialLoopback(front.port);
    client.on('error', () => undefined);
    const receiving = receiveAll(client);
    const conn = SplitConnection.accepted(await front.next(), { id: 6, kind: 'forward', forwarder: reporting, timeouts: TIMEOUTS, onClose: rec.onClose });
    conn.attachUpstream(dialLoopback(origin.port), 'direct');
    client.end('abc');
    const [got, record] = await Promise.all([receiving, rec.closed]);
    assert.equal(got.bytes, 30);
    assert.equal(record.outcome, 'ok');
    assert.equal(record.up, 12_345);
    assert.equal(record.down, 678);
    assert.ok(record.ttfbMs !== undefined && record.ttfbMs <= 0, 'ttfb measured from the forwarder\'s first byte');
  });
});
