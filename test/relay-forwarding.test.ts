import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Relay } from '../src/relay/relay.js';
import { createServer, connect, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { tcpServer, dial, startChain, startRelay, sendRandom, receiveAll, waitFor, MiB, type Received } from './helpers/net.js';

/** A server that hashes what it receives and sends `reply` random bytes, then ends. */
async function hashingServer(reply: number) {
  const results: Promise<{ received: Received; sent: string }>[] = [];
  const srv = await tcpServer((socket) => {
    results.push((async () => {
      const [received, sent] = await Promise.all([receiveAll(socket), sendRandom(socket, reply)]);
      socket.end();
      return { received, sent };
    })());
  });
  return { ...srv, results };
}

async function closeAll(relays: Relay[]): Promise<void> {
  await Promise.all(relays.map((r) => r.close()));
}

describe('relay forwarding through a chain on loopback', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => { for (const c of cleanups.reverse()) await c(); });

  it('moves 256 MiB each way through client -> R_C -> R_S -> server with identical SHA-256', async () => {
    const size = 256 * MiB;
    const server = await hashingServer(size);
    cleanups.push(server.close);
    const { relays, port } = await startChain(2, server.port);
    cleanups.push(() => closeAll(relays));

    const client = await dial(port);
    const receiving = receiveAll(client);
    const sentUp = await sendRandom(client, size);
    client.end();
    const down = await receiving;
    const serverSide = await server.results[0];
    assert.ok(serverSide);
    assert.equal(serverSide.received.outcome, 'end');
    assert.equal(serverSide.received.bytes, size);
    assert.equal(serverSide.received.sha256, sentUp, 'upstream bytes differ');
    assert.equal(down.outcome, 'end');
    assert.equal(down.bytes, size);
    assert.equal(down.sha256, serverSide.sent, 'downstream bytes differ');
    // The relays count what they forwarded and record a clean outcome.
    for (const relay of relays) {
      await waitFor(() => relay.activeConnections === 0);
      assert.equal(await relay.metrics.registry.value('tcpsplit_connections_closed_total', { outcome: 'ok' }), 1);
    }
    assert.equal(await relays[0]?.metrics.registry.value('tcpsplit_bytes_total', { direction: 'down' }), size);
  });

  it('works through a chain of three relays', async () => {
    const server = await hashingServer(3 * MiB);
    cleanups.push(server.close);
    const { relays, port } = await startChain(3, server.port);
    cleanups.push(() => closeAll(relays));
    const client = await dial(port);
    const receiving = receiveAll(client);
    const sentUp = await sendRandom(client, 5 * MiB);
    client.end();
    const down = await receiving;
    const serverSide = await server.results[0];
    assert.equal(serverSide?.received.sha256, sentUp);
    assert.equal(down.sha256, serverSide.sent);
    assert.equal(await relays[1]?.metrics.registry.value('tcpsplit_next_leg_total', { kind: 'peer' }), 1, 'the middle relay routes on to the next peer');
    assert.equal(await relays[2]?.metrics.registry.value('tcpsplit_next_leg_total', { kind: 'direct' }), 1);
  });
});

describe('IPv6', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => { for (const c of cleanups.reverse()) await c(); });

  it('listens, peers and connects over IPv6 (::1), with an IPv6 target in the header', async () => {
    const server = createServer((s) => { s.end('hello6\n'); }).listen(0, '::1');
    await once(server, 'listening');
    cleanups.push(() => new Promise((r) => { server.close(() => { r(); }); }));
    const serverPort = (server.address() as AddressInfo).port;
    const rs = await startRelay(['--accept', '[::1]:0', '--allow', '::1/128']);
    cleanups.push(() => rs.close());
    const rc = await startRelay(['-L', `[::1]:0:[::1]:${serverPort}`, '--peer', `rs=[::1]:${rs.addresses().accept?.port ?? 0}`, '--route', '::/0=rs']);
    cleanups.push(() => rc.close());
    const client = connect({ host: '::1', port: rc.addresses().forward[0]?.port ?? 0, allowHalfOpen: true });
    client.end();
    const got = await receiveAll(client);
    assert.equal(got.outcome, 'end');
    assert.equal(got.bytes, 7);
    assert.equal(await rs.metrics.registry.value('tcpsplit_next_leg_total', { kind: 'direct' }), 1);
  });
});

describe('half-close is kept per direction', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => { for (const c of cleanups.reverse()) await c(); });

  it('a client that shuts down its write side still receives the whole response', async () => {
    // The server answers only after the request's EOF, like `nc -N` or an RPC over one stream.
    const server = await tcpServer((socket) => {
      void receiveAll(socket).then(async (req) => {
        socket.write(`${req.bytes} ${req.sha256}\n`);
        await sendRandom(socket, 4 * MiB);
        socket.end();
      });
    });
    cleanups.push(server.close);
    const { relays, port } = await startChain(2, server.port);
    cleanups.push(() => closeAll(relays));

    const client = await dial(port);
    const receiving = receiveAll(client);
    const sent = await sendRandom(client, 1 * MiB);
    client.end(); // FIN toward the server; the response must still arrive
    const got = await receiving;
    assert.equal(got.outcome, 'end');
    assert.equal(got.bytes, `${MiB} ${sent}\n`.length + 4 * MiB);
  });

  it('a request and FIN that arrive before the next leg is up are forwarded, and the connection completes', async () => {
    const server = await tcpServer((socket) => {
      void receiveAll(socket).then((req) => { socket.end(`got ${req.bytes}\n`); });
    });
    cleanups.push(server.close);
    const { relays, port } = await startChain(2, server.port);
    cleanups.push(() => closeAll(relays));
    for (let i = 0; i < 5; i++) {
      const client = await dial(port);
      client.end('GET / HTTP/1.0\r\n\r\n'); // request and FIN at once, like `printf ... | nc -N`
      const got = await receiveAll(client);
      assert.equal(got.outcome, 'end');
      assert.equal(got.bytes, 'got 18\n'.length);
    }
    await waitFor(() => relays.every((r) => r.activeConnections === 0));
  });

  it('a server that finishes first still receives everything the client sends afterwards', async () => {
    let serverGot: Promise<Received> | undefined;
    const server = await tcpServer((socket) => {
      serverGot = receiveAll(socket);
      socket.end('bye\n'); // FIN toward the client first
    });
    cleanups.push(server.close);
    const { relays, port } = await startChain(2, server.port);
    cleanups.push(() => closeAll(relays));

    const client = await dial(port);
    const got = await receiveAll(client);
    assert.equal(got.outcome, 'end');
    assert.equal(got.bytes, 4);
    const sent = await sendRandom(client, 2 * MiB); // after our side saw EOF
    client.end();
    await waitFor(() => serverGot !== undefined);
    const result = await serverGot;
    assert.equal(result?.outcome, 'end');
    assert.equal(result.sha256, sent);
  });
});

describe('aborts are never turned into clean ends', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => { for (const c of cleanups.reverse()) await c(); });

  it('a server reset mid-stream reaches the client as a reset', async () => {
    const server = await tcpServer((socket) => {
      void sendRandom(socket, 2 * MiB).then(() => { socket.resetAndDestroy(); });
    });
    cleanups.push(server.close);
    const { relays, port } = await startChain(2, server.port);
    cleanups.push(() => closeAll(relays));
    const client = await dial(port);
    const got = await receiveAll(client);
    assert.equal(got.outcome, 'ECONNRESET');
    await waitFor(() => relays.every((r) => r.activeConnections === 0));
    assert.equal(await relays[0]?.metrics.registry.value('tcpsplit_connections_closed_total', { outcome: 'TCPSPLIT_ERR_RESET' }), 1);
  });

  it('a client reset mid-stream reaches the server as a reset', async () => {
    let atServer: Promise<Received> | undefined;
    const server = await tcpServer((socket) => { atServer = receiveAll(socket); });
    cleanups.push(server.close);
    const { relays, port } = await startChain(2, server.port);
    cleanups.push(() => closeAll(relays));
    const client = await dial(port);
    client.on('error', () => undefined);
    await sendRandom(client, 1 * MiB);
    await waitFor(() => atServer !== undefined);
    client.resetAndDestroy();
    assert.equal((await atServer)?.outcome, 'ECONNRESET');
  });

  it('a refused target reaches the client as a reset, with the connect error counted', async () => {
    const server = await tcpServer(() => undefined);
    const deadPort = server.port;
    await server.close(); // nothing listens there now
    const { relays, port } = await startChain(2, deadPort);
    cleanups.push(() => closeAll(relays));
    const client = await dial(port);
    client.write('GET / HTTP/1.0\r\n\r\n');
    const got = await receiveAll(client);
    assert.equal(got.outcome, 'ECONNRESET');
    await waitFor(() => relays[1]?.activeConnections === 0);
    assert.equal(await relays[1]?.metrics.registry.value('tcpsplit_connections_closed_total', { outcome: 'TCPSPLIT_ERR_CONNECT' }), 1);
  });
});
