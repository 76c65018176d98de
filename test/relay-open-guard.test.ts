/**
 * A throw while opening the next leg after an asynchronous route (a name resolved to pick
 * a route) fails that one connection. It once became an unhandled rejection, and the
 * crash handler of `tcpsplit relay` then reset every open connection.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { tcpServer, dial, startRelay, receiveAll } from './helpers/net.js';

describe('relay: opening the next leg after an asynchronous route', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  after(async () => { for (const c of cleanups.reverse()) await c(); });

  it('a throw there fails that connection only, never as an unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => { unhandled.push(reason); };
    process.on('unhandledRejection', onUnhandled);
    cleanups.push(() => { process.off('unhandledRejection', onUnhandled); });
    const server = await tcpServer((s) => { s.end('hello'); });
    cleanups.push(server.close);
    // A peer route makes the router resolve names; 'localhost' is not in it, so it goes direct.
    const relay = await startRelay(['-L', `127.0.0.1:0:localhost:${server.port}`,
      '--peer', 'p=127.0.0.1:9', '--route', '198.18.0.0/15=p']);
    cleanups.push(() => relay.close());
    // Fault injection: the only way to make this code path throw on demand.
    const fault = new Error('injected fault after the route was resolved');
    Object.defineProperty(relay.metrics, 'nextLeg', { value: () => { throw fault; } });
    const client = await dial(relay.addresses().forward[0]?.port ?? 0);
    const got = await receiveAll(client);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(unhandled, [], 'no unhandled rejection');
    assert.equal(got.outcome, 'ECONNRESET', 'the connection is reset, as any failed connection');
  });
});
