/**
 * resetSocket() (src/sys/tcp-socket.ts) on a socket Node still calls connecting. On
 * loopback the kernel completes the handshake inside connect(2), so once Node has made
 * that call (on the tick after net.connect()) the socket is established in the kernel
 * while Node has not emitted 'connect'. An early leg refused at its claim is closed in that state; a plain
 * close sent a FIN there, and the server (half-open, as a relay's target may be) held a
 * CLOSE_WAIT socket for ever (test/relay-abuse.test.ts, with early SYN on).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { resetSocket } from '../src/sys/tcp-socket.js';

test('a socket reset while Node still calls it connecting reaches the server as a reset, not a clean end', async () => {
  const outcomes: Promise<string>[] = [];
  const server = createServer({ allowHalfOpen: true }, (s: Socket) => {
    outcomes.push(new Promise((resolve) => {
      s.on('error', (err: NodeJS.ErrnoException) => { resolve(err.code ?? 'error'); });
      s.on('end', () => { resolve('end'); });
      s.resume();
    }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const { port } = server.address() as AddressInfo;
    for (let i = 0; i < 5; i++) {
      const c = connect({ port, host: '127.0.0.1' });
      c.on('error', () => undefined);
      // Node calls connect(2) on the next tick; this tick comes right after it, before
      // the event loop has polled for the connection's completion.
      await new Promise<void>((resolve) => { process.nextTick(resolve); });
      assert.equal(c.connecting, true);
      resetSocket(c);
    }
    const deadline = Date.now() + 5000;
    while (outcomes.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(outcomes.length, 5, 'the kernel completed every handshake before the reset');
    assert.deepEqual(await Promise.all(outcomes), Array<string>(5).fill('ECONNRESET'));
  } finally {
    server.close();
  }
});
