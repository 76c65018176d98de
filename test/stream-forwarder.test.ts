import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { streamForwarder } from '../src/dataplane/stream-forwarder.js';
import type { Direction, ForwardingSink, ForwardingStats } from '../src/dataplane/forwarder.js';
import { tcpServer, sendRandom, receiveAll, MiB } from './helpers/net.js';

/** Two connected loopback sockets: [the dialling end, the accepted end]. */
async function socketPair(): Promise<{ near: Socket; far: Socket; close: () => Promise<void> }> {
  let accepted!: (s: Socket) => void;
  const far = new Promise<Socket>((r) => { accepted = r; });
  const srv = await tcpServer((s) => { accepted(s); });
  const near = connect({ port: srv.port, host: '127.0.0.1', allowHalfOpen: true });
  near.on('error', () => undefined);
  await once(near, 'connect');
  return { near, far: await far, close: async () => { near.destroy(); await srv.close(); } };
}

/** Does what SplitConnection does on EOF (passes the FIN on) and remembers what it was told. */
class RecordingSink implements ForwardingSink {
  readonly ended: Direction[] = [];
  readonly resets: Direction[] = [];
  constructor(private readonly downstream: Socket, private readonly upstream: Socket) {}
  forwardingEnded(direction: Direction): void {
    this.ended.push(direction);
    (direction === 'up' ? this.upstream : this.downstream).end();
  }
  forwardingReset(direction: Direction): void {
    this.resets.push(direction);
  }
}

describe('stream forwarder (real loopback sockets)', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => { for (const c of cleanups.reverse()) await c(); });

  it('counts the bytes each way and the first byte, including early bytes taken for a preamble, and reports each EOF', async () => {
    // client <-> [downstream | upstream] <-> server
    const front = await socketPair();
    const back = await socketPair();
    cleanups.push(front.close, back.close);
    const client = front.near;
    const server = back.far;
    const early = Buffer.from('early bytes before forwarding starts');
    client.write(early);
    await once(front.far, 'readable');
    const sink = new RecordingSink(front.far, back.near);
    const forwarding = streamForwarder.open(front.far, back.near, sink);
    const taken = forwarding.takeEarly();
    assert.deepEqual(taken, early);
    back.near.write(early);
    const before: ForwardingStats = { ...forwarding };
    assert.equal(before.firstByteAt, undefined);
    forwarding.start();

    const atServer = receiveAll(server);
    const atClient = receiveAll(client);
    const beforeReply = performance.now();
    const [sentUp, sentDown] = await Promise.all([sendRandom(client, 3 * MiB), sendRandom(server, 2 * MiB + 7)]);
    client.end();
    server.end();
    const [gotServer, gotClient] = await Promise.all([atServer, atClient]);
    assert.equal(gotServer.bytes, early.length + 3 * MiB);
    assert.equal(gotClient.sha256, sentDown);
    assert.notEqual(sentUp, '');
    assert.equal(forwarding.upBytes, early.length + 3 * MiB, 'up: early bytes plus everything forwarded');
    assert.equal(forwarding.downBytes, 2 * MiB + 7);
    assert.ok(forwarding.firstByteAt !== undefined && forwarding.firstByteAt >= beforeReply);
    assert.deepEqual([...sink.ended].sort(), ['down', 'up']);
    assert.deepEqual(sink.resets, []);
  });
});
