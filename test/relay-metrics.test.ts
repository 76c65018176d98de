import { it, after } from 'node:test';
import assert from 'node:assert/strict';
import { tcpServer, dial, startRelay, receiveAll, waitFor } from './helpers/net.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

it('--metrics serves Prometheus text at /metrics and ok at /healthz', async () => {
  const server = await tcpServer((s) => { s.end('hello'); });
  cleanups.push(server.close);
  const relay = await startRelay(['-L', `127.0.0.1:0:127.0.0.1:${server.port}`, '--metrics', '127.0.0.1:0']);
  cleanups.push(() => relay.close());
  const { forward, metrics } = relay.addresses();
  assert.ok(metrics);
  const client = await dial(forward[0]?.port ?? 0);
  client.end();
  await receiveAll(client);
  await waitFor(() => relay.activeConnections === 0);

  const base = `http://127.0.0.1:${metrics.port}`;
  const res = await fetch(`${base}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  const text = await res.text();
  assert.match(text, /^# TYPE tcpsplit_connections_accepted_total counter$/m);
  assert.match(text, /^tcpsplit_connections_accepted_total\{listener="forward"\} 1$/m);
  assert.match(text, /^tcpsplit_connections_closed_total\{outcome="ok"\} 1$/m);
  assert.match(text, /^tcpsplit_bytes_total\{direction="down"\} 5$/m);
  assert.match(text, /^tcpsplit_connections_active 0$/m);
  assert.match(text, /^# TYPE tcpsplit_first_byte_seconds histogram$/m);
  assert.match(text, /^tcpsplit_first_byte_seconds_bucket\{le="\+Inf"\} 1$/m);
  assert.match(text, /^tcpsplit_first_byte_seconds_count 1$/m);
  assert.match(text, /^tcpsplit_next_leg_connect_seconds_bucket\{le="10"\} 1$/m);
  assert.equal(await (await fetch(`${base}/healthz`)).text(), 'ok\n');
  assert.equal((await fetch(`${base}/nope`)).status, 404);
});
