import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { tcpServer, dial, startRelay, receiveAll, waitFor, MiB, type Received } from './helpers/net.js';
import { forwardingRelayProcess } from './helpers/relay-process.js';

/**
 * A listener that never completes handshakes: listen(0) and no accept(), then one
 * connection fills the accept queue, so the kernel drops further SYNs and connect() hangs.
 * Python, because Node always accepts.
 */
async function blackholeListener(): Promise<{ port: number; stop: () => void }> {
  const py = spawn('python3', ['-c', [
    'import socket, sys, time',
    's = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)',
    'fill = [socket.create_connection(s.getsockname()) for _ in range(1)]',
    'print(s.getsockname()[1], flush=True)',
    'time.sleep(60)',
  ].join('\n')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const rl = createInterface({ input: py.stdout });
  const [line] = (await once(rl, 'line')) as [string];
  return { port: Number(line), stop: () => { py.kill('SIGKILL'); } };
}

describe('relay timeouts', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  after(async () => { for (const c of cleanups.reverse()) await c(); });

  it('a next leg that does not connect within --connect-timeout resets the client', async () => {
    const hole = await blackholeListener();
    cleanups.push(hole.stop);
    const relay = await startRelay(['-L', `127.0.0.1:0:127.0.0.1:${hole.port}`, '--connect-timeout', '300ms']);
    cleanups.push(() => relay.close());
    const client = await dial(relay.addresses().forward[0]?.port ?? 0);
    const started = Date.now();
    const got = await receiveAll(client);
    const waited = Date.now() - started;
    assert.equal(got.outcome, 'ECONNRESET');
    assert.ok(waited >= 250 && waited < 3000, `reset after ${waited} ms, expected about 300`);
    await waitFor(() => relay.activeConnections === 0);
    assert.equal(await relay.metrics.registry.value('tcpsplit_connections_closed_total', { outcome: 'TCPSPLIT_ERR_CONNECT_TIMEOUT' }), 1);
  });

  it('a connection idle for --idle-timeout is reset, not closed cleanly', async () => {
    const server = await tcpServer(() => undefined); // accepts and stays silent
    cleanups.push(server.close);
    const relay = await startRelay(['-L', `127.0.0.1:0:127.0.0.1:${server.port}`, '--idle-timeout', '300ms']);
    cleanups.push(() => relay.close());
    const client = await dial(relay.addresses().forward[0]?.port ?? 0);
    const got = await receiveAll(client);
    assert.equal(got.outcome, 'ECONNRESET');
    await waitFor(() => relay.activeConnections === 0);
    assert.equal(await relay.metrics.registry.value('tcpsplit_connections_closed_total', { outcome: 'TCPSPLIT_ERR_IDLE_TIMEOUT' }), 1);
  });
});

describe('bounded memory', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  after(async () => { for (const c of cleanups.reverse()) await c(); });

  it('relay RSS stays bounded while a client reads 1 GiB slowly from a fast server', async () => {
    const total = 1024 * MiB;
    const chunk = Buffer.alloc(1 * MiB, 0x5a);
    const server = await tcpServer((socket) => {
      let sent = 0;
      const pump = (): void => {
        while (sent < total) {
          sent += chunk.length;
          if (!socket.write(chunk)) { socket.once('drain', pump); return; }
        }
        socket.end();
      };
      pump();
    });
    cleanups.push(server.close);
    const { relay, port } = await forwardingRelayProcess(server.port);
    cleanups.push(() => relay.stop());
    const client = await dial(port);
    // Read about 160 MiB/s: far slower than loopback, so the relay is pushed to buffer.
    let received = 0;
    client.on('data', (c: Buffer) => { received += c.length; client.pause(); });
    const pacer = setInterval(() => { client.resume(); }, 1);
    // Peak RSS over the first and the second half of the transfer: bounded buffering
    // plateaus early; buffering the stream would grow by hundreds of MiB through the second.
    const baseline = relay.rssBytes();
    const peak = [baseline, baseline];
    const sampler = setInterval(() => {
      const half = received < total / 2 ? 0 : 1;
      peak[half] = Math.max(peak[half] ?? 0, relay.rssBytes());
    }, 50);
    await once(client, 'end');
    clearInterval(pacer);
    clearInterval(sampler);
    assert.equal(received, total);
    const [first = 0, second = 0] = peak.map((p) => (p - baseline) / MiB);
    process.stderr.write(`# relay RSS: baseline ${(baseline / MiB).toFixed(1)} MiB, growth ${first.toFixed(1)} MiB in the first half, ${second.toFixed(1)} MiB in the second\n`);
    // A socket's highWaterMark each way plus a chunk in flight is all the stream may hold;
    // the rest is the V8/allocator working set, which differs by Node version (about
    // +35 MiB on Node 20, +75 MiB on Node 24, flat after the first ~200 MiB on both).
    assert.ok(second <= first + 16, `RSS kept growing: +${first.toFixed(1)} MiB in the first half, +${second.toFixed(1)} MiB by the end`);
    assert.ok(second < 128, `relay RSS grew by ${second.toFixed(1)} MiB while 1 GiB passed`);
  });
});

describe('a relay that dies', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  after(async () => { for (const c of cleanups.reverse()) await c(); });

  it('SIGKILL mid-download resets both ends instead of closing them cleanly', async () => {
    let atServer: Promise<Received> | undefined;
    const server = await tcpServer((socket) => {
      atServer = receiveAll(socket);
      const chunk = Buffer.alloc(64 * 1024, 1);
      const timer = setInterval(() => { if (!socket.destroyed) socket.write(chunk); }, 5); // a download that goes on
      socket.on('close', () => { clearInterval(timer); });
    });
    cleanups.push(server.close);
    const { relay, port } = await forwardingRelayProcess(server.port);
    cleanups.push(() => relay.stop());
    const client = await dial(port);
    const receiving = receiveAll(client);
    client.write('upload in progress');
    await waitFor(() => atServer !== undefined);
    await new Promise((r) => setTimeout(r, 100));
    relay.child.kill('SIGKILL'); // no chance to clean up: only the kernel speaks for us now
    assert.equal((await receiving).outcome, 'ECONNRESET', 'the client must not see a clean end');
    assert.equal((await atServer)?.outcome, 'ECONNRESET', 'the server must not see a clean end');
  });
});
