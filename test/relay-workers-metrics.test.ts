/**
 * The /metrics page of a relay with two worker threads (issue 11 §2): after a scripted
 * workload it shows exactly that workload, summed over the workers by prom-client's
 * aggregator; bytes grow while a transfer runs, not only at its close; and a worker that
 * dies leaves its counters in the sum.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { get as httpGet } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadRelayConfig } from '../src/config/load-config.js';
import { silentLogger } from '../src/observe/logger.js';
import { Supervisor } from '../src/worker/supervisor.js';
import { receiveAll, tcpServer } from './helpers/net.js';
import { RelayProcess } from './helpers/relay-process.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Connections in the workload, and bytes each sends up and gets back down. */
const N = 24;
const M = 100_000;

/** An origin on 127.0.0.1: `onSocket` serves each connection; closed with the test. */
async function origin(onSocket: (s: Socket) => void): Promise<number> {
  const server = await tcpServer(onSocket);
  cleanups.push(server.close);
  return server.port;
}

/** Echoes what it reads and ends after the client's FIN. */
function echo(s: Socket): void {
  s.pipe(s);
}

/** M bytes up through the relay, half-close, and M back: the echo's. */
async function exchange(port: number): Promise<void> {
  const c = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  c.end(Buffer.alloc(M, 0x61));
  const got = await receiveAll(c);
  assert.deepEqual([got.outcome, got.bytes], ['end', M]);
}

/** A /metrics page as `name{labels}` -> value (one fresh connection, none left open). */
async function scrape(port: number): Promise<Map<string, number>> {
  const text = await new Promise<string>((resolve, reject) => {
    httpGet({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => { resolve(body); });
    }).on('error', reject);
  });
  return parse(text);
}

function parse(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m?.[1] !== undefined && m[2] !== undefined) values.set(m[1], Number(m[2]));
  }
  return values;
}

/** Until `cond` holds for a scrape (bounded): the last scrape. */
async function until(read: () => Promise<Map<string, number>>, cond: (m: Map<string, number>) => boolean, what: string): Promise<Map<string, number>> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const m = await read();
    if (cond(m)) return m;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}: ${JSON.stringify(Object.fromEntries([...m].filter(([k]) => !k.includes('_bucket'))))}`);
    await sleep(50);
  }
}

const closedOk = 'tcpsplit_connections_closed_total{outcome="ok"}';

describe('metrics across two workers', () => {
  it('a real relay with --workers 2 shows exactly the workload: N accepted and closed, N*M bytes each way', async () => {
    const target = await origin(echo);
    const relay = new RelayProcess(['--workers', '2', '-L', `127.0.0.1:0:127.0.0.1:${target}`, '--metrics', '127.0.0.1:0']);
    cleanups.push(() => relay.stop());
    const [port] = (await relay.ready()).forward;
    assert.ok(port !== undefined);
    const metricsPort = ((await relay.waitFor((l) => l.event === 'ready'))['metrics'] as AddressInfo).port;

    for (let i = 0; i < N; i += 8) await Promise.all(Array.from({ length: Math.min(8, N - i) }, async () => exchange(port)));
    // The gauges in the condition too: a worker that answers a scrape late is left out of the
    // gauges of that scrape (its counters come from its last snapshot).
    const m = await until(() => scrape(metricsPort), (v) => v.get(closedOk) === N && v.get('tcpsplit_connections_active') === 0
      && ['0', '1'].every((w) => v.has(`tcpsplit_event_loop_lag_seconds{worker="${w}"}`)), `${N} connections closed, gauges from both workers`);

    assert.equal(m.get('tcpsplit_connections_accepted_total{listener="forward"}'), N);
    assert.equal(m.get(closedOk), N);
    assert.equal([...m.keys()].filter((k) => k.startsWith('tcpsplit_connections_closed_total')).length, 1, 'no other outcome');
    assert.equal(m.get('tcpsplit_bytes_total{direction="up"}'), N * M);
    assert.equal(m.get('tcpsplit_bytes_total{direction="down"}'), N * M);
    assert.equal(m.get('tcpsplit_connections_active'), 0);
    assert.equal(m.get('tcpsplit_next_leg_total{kind="direct"}'), N);
    assert.equal(m.get('tcpsplit_first_byte_seconds_count'), N);
    assert.equal(m.get('tcpsplit_next_leg_connect_seconds_count'), N);
    assert.equal(m.get('tcpsplit_workers'), 2);
    assert.equal(m.get('tcpsplit_workers_configured'), 2);
    assert.ok((m.get('tcpsplit_open_fds') ?? 0) > 0, 'open fds counted');
    for (const w of ['0', '1']) assert.ok(m.has(`tcpsplit_event_loop_lag_seconds{worker="${w}"}`), `event-loop lag of worker ${w}`);
  });

  it('tcpsplit_bytes_total grows during a long download, and counts it once at its close', async () => {
    const CHUNK = 64 * 1024;
    const CHUNKS = 40;
    // A slow download: one chunk every 100 ms, 4 s in all (longer than two scrapes that
    // each wait out a late worker).
    const target = await origin((s) => {
      let sent = 0;
      const timer = setInterval(() => {
        s.write(Buffer.alloc(CHUNK, 0x62));
        if (++sent === CHUNKS) { clearInterval(timer); s.end(); }
      }, 100);
      s.on('close', () => { clearInterval(timer); });
    });
    const relay = new RelayProcess(['--workers', '2', '-L', `127.0.0.1:0:127.0.0.1:${target}`, '--metrics', '127.0.0.1:0']);
    cleanups.push(() => relay.stop());
    const [port] = (await relay.ready()).forward;
    assert.ok(port !== undefined);
    const metricsPort = ((await relay.waitFor((l) => l.event === 'ready'))['metrics'] as AddressInfo).port;
    const down = 'tcpsplit_bytes_total{direction="down"}';

    const client = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let got = 0;
    client.on('data', (c: Buffer) => { got += c.length; });
    const done = receiveAll(client);
    const first = await until(() => scrape(metricsPort), (v) => (v.get(down) ?? 0) > 0, 'the first bytes counted');
    const second = await until(() => scrape(metricsPort), (v) => (v.get(down) ?? 0) > (first.get(down) ?? 0), 'more bytes counted');
    assert.equal(second.get('tcpsplit_connections_active'), 1, 'the download is still running');
    assert.ok((second.get(down) ?? 0) > (first.get(down) ?? 0), `bytes grew while it ran: ${first.get(down)} then ${second.get(down)}`);
    assert.ok((second.get(down) ?? 0) < CHUNK * CHUNKS);
    client.end();
    const result = await done;
    assert.deepEqual([result.outcome, result.bytes, got], ['end', CHUNK * CHUNKS, CHUNK * CHUNKS]);
    const last = await until(() => scrape(metricsPort), (v) => v.get(closedOk) === 1, 'the download closed');
    assert.equal(last.get(down), CHUNK * CHUNKS, 'at its close, the connection\'s bytes moved from open to closed: not lost, not twice');
  });

  it('a worker that dies leaves its counters in the sum: nothing goes back', async () => {
    const target = await origin(echo);
    const { config } = await loadRelayConfig(['-L', `127.0.0.1:0:127.0.0.1:${target}`, '--workers', '2', '--log-level', 'error'], {});
    const supervisor = await Supervisor.start(config, { logger: silentLogger() });
    cleanups.push(() => supervisor.close());
    const port = supervisor.addresses().forward[0]?.port ?? 0;
    const read = async (): Promise<Map<string, number>> => parse(await supervisor.render());

    for (let i = 0; i < N; i += 8) await Promise.all(Array.from({ length: Math.min(8, N - i) }, async () => exchange(port)));
    const before = await until(read, (v) => v.get(closedOk) === N, `${N} connections closed`);
    const perWorker = (await supervisor.status()).perWorker;
    const busy = perWorker.find((w) => w.accepted > 0);
    assert.ok(busy !== undefined, 'a worker accepted connections');

    await supervisor.killWorker(busy.index);
    const after = await read();
    const series = ['tcpsplit_connections_accepted_total{listener="forward"}', closedOk,
      'tcpsplit_bytes_total{direction="up"}', 'tcpsplit_bytes_total{direction="down"}', 'tcpsplit_first_byte_seconds_count'];
    for (const name of series) assert.equal(after.get(name), before.get(name), `${name} kept worker ${busy.index}'s counts`);
    assert.equal(after.get(closedOk), N);
    assert.equal(after.get('tcpsplit_bytes_total{direction="up"}'), N * M);
    assert.equal(after.get('tcpsplit_worker_restarts_total'), 1);
    assert.equal(after.get('tcpsplit_workers'), 2, 'the replacement runs');

    // And the sum goes on from there: the replacement's connections add to it.
    await exchange(port);
    const more = await until(read, (v) => v.get(closedOk) === N + 1, 'one more connection closed');
    assert.equal(more.get('tcpsplit_bytes_total{direction="down"}'), (N + 1) * M);
  });
});
