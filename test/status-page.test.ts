import { it, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { once } from 'node:events';
import { Script } from 'node:vm';
import { startMetricsServer, serverAddress } from '../src/observe/metrics-server.js';
import { StatusPage, type StatusPageOptions } from '../src/control/status-page.js';
import type { RelayView, ViewSource } from '../src/control/relay-view.js';
import { ConfigError } from '../src/errors.js';
import { changingViews, SseReader } from './helpers/status-view.js';
import { waitFor } from './helpers/net.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

const metrics = { render: () => '# nothing\n' };
const FAST: Partial<StatusPageOptions> = { intervalMs: 50, heartbeatMs: 40, retryMs: 700 };

/** A metrics server with the page, closed after the file even if a test fails. */
async function serve(views: ViewSource, options: Partial<StatusPageOptions> = FAST): Promise<{ server: Server; base: string }> {
  const server = await startMetricsServer(metrics, '127.0.0.1', 0, views, options);
  cleanups.push(() => closeWithin(server, 5000));
  return { server, base: `http://127.0.0.1:${serverAddress(server).port}` };
}

/** server.close() alone (no closeAllConnections), failing instead of hanging. */
async function closeWithin(server: Server, timeoutMs: number): Promise<void> {
  if (!server.listening) return;
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => { reject(new Error(`server.close() did not complete in ${timeoutMs} ms`)); }, timeoutMs);
  });
  try {
    await Promise.race([new Promise<void>((r) => { server.close(() => { r(); }); }), hung]);
  } finally {
    clearTimeout(timer);
    server.closeAllConnections();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function openStream(url: string): Promise<SseReader> {
  return SseReader.open(url).then((reader) => {
    cleanups.push(() => { reader.destroy(); });
    return reader;
  });
}

it('GET / is the page: HTML whose policy allows only this origin, loading nothing from elsewhere, with a script that parses', async () => {
  const { base } = await serve(changingViews());
  const res = await fetch(`${base}/`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
  const csp = res.headers.get('content-security-policy') ?? '';
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /connect-src 'self'/);
  assert.doesNotMatch(csp, /https?:|\*|unsafe-/, 'the policy names no other origin and allows no eval or stray inline code');
  const html = await res.text();
  assert.match(html, /<title>tcpsplit status<\/title>/);
  assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//, 'no script, style or image from another origin');
  const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1] ?? '');
  assert.equal(scripts.length, 1);
  assert.doesNotThrow(() => new Script(scripts[0] ?? ''), 'the inline script is valid JavaScript');
  assert.match(scripts[0] ?? '', /new EventSource\('events'\)/);
});

it('GET /status.json is the current view; a failing view is 503 with the reason', async () => {
  const views = changingViews();
  const { base } = await serve(views);
  const res = await fetch(`${base}/status.json`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const view = await res.json() as RelayView;
  assert.equal(views.calls, 1);
  const rs = view.peers[0];
  assert.ok(rs);
  assert.equal(rs.name, 'rs');
  assert.equal(rs.pool.size, 4);
  assert.deepEqual(view.routes, [{ cidr: '10.20.0.0/16', via: 'rs' }, { cidr: '0.0.0.0/0', via: 'direct' }]);

  const failing = await serve({ view: () => Promise.reject(new Error('workers busy')) });
  const bad = await fetch(`${failing.base}/status.json`);
  assert.equal(bad.status, 503);
  assert.match(await bad.text(), /workers busy/);
});

it('GET /events sends a view at once and then one per interval, with a retry field and heartbeats', async () => {
  const views = changingViews();
  const { base } = await serve(views);
  const stream = await openStream(`${base}/events`);
  assert.equal(stream.response.statusCode, 200);
  assert.match(String(stream.response.headers['content-type']), /^text\/event-stream/);
  await stream.until(() => stream.events.length >= 4, 'four view events');
  await stream.until(() => stream.comments.includes('heartbeat'), 'a heartbeat');
  assert.equal(stream.retry, 700);
  const seen = stream.events.slice(0, 4).map((e) => {
    assert.equal(e.event, 'view');
    return JSON.parse(e.data) as RelayView;
  });
  for (let i = 1; i < seen.length; i++) {
    assert.ok((seen[i]?.at ?? 0) > (seen[i - 1]?.at ?? Infinity), 'each event is a fresh view');
    assert.ok((seen[i]?.bytes.down ?? 0) >= (seen[i - 1]?.bytes.down ?? Infinity));
  }
});

it('a view that fails is an `unavailable` event with the reason, and the stream stays open', async () => {
  let fail = true;
  const views = changingViews();
  const { base } = await serve({ view: () => (fail ? Promise.reject(new Error('worker 1 did not answer')) : views.view()) });
  const stream = await openStream(`${base}/events`);
  await stream.until(() => stream.events.some((e) => e.event === 'unavailable'), 'an unavailable event');
  const unavailable = stream.events.find((e) => e.event === 'unavailable');
  assert.match((JSON.parse(unavailable?.data ?? '{}') as { message: string }).message, /worker 1 did not answer/);
  fail = false;
  await stream.until(() => stream.events.some((e) => e.event === 'view'), 'a view once the source recovers');
  assert.equal(stream.ended, false);
});

it('a client that goes away is cleaned up: its connection closes, and with no client left no views are taken', async () => {
  const views = changingViews();
  const { server, base } = await serve(views);
  const first = await openStream(`${base}/events`);
  const second = await openStream(`${base}/events`);
  await first.until(() => first.events.length >= 2, 'two events');
  first.destroy();
  const callsWhileOne = views.calls;
  await second.until(() => second.events.length >= 4 && views.calls >= callsWhileOne + 2, 'the other client still served');
  second.destroy();
  await waitFor(() => connections(server) === 0);
  const idle = views.calls;
  await sleep(6 * 50);
  assert.equal(views.calls, idle, 'the ticker stopped with the last client');
});

let lastConnections = -1;
function connections(server: Server): number {
  server.getConnections((err, n) => { if (err === null) lastConnections = n; });
  return lastConnections;
}

it('the client cap: one past maxClients gets 503 with a reason, and a freed slot is taken again', async () => {
  const { base } = await serve(changingViews(), { ...FAST, maxClients: 2 });
  const a = await openStream(`${base}/events`);
  const b = await openStream(`${base}/events`);
  assert.equal(a.response.statusCode, 200);
  assert.equal(b.response.statusCode, 200);
  const refused = await fetch(`${base}/events`);
  assert.equal(refused.status, 503);
  assert.match(await refused.text(), /too many live status pages: 2 are open; close one, or poll \/status\.json/);
  // The page and the JSON are still served at the cap.
  assert.equal((await fetch(`${base}/status.json`)).status, 200);
  a.destroy();
  let again: SseReader | undefined;
  await waitFor(() => a.ended);
  for (let i = 0; i < 50 && again?.response.statusCode !== 200; i++) {
    again?.destroy();
    again = await openStream(`${base}/events`);
    if (again.response.statusCode !== 200) await sleep(20);
  }
  assert.equal(again?.response.statusCode, 200, 'the freed slot is taken');
  await again.until(() => again.events.length >= 1, 'a view on the new stream');
});

it('server.close() with streams open ends them and completes (no closeAllConnections needed)', async () => {
  const { server, base } = await serve(changingViews());
  const streams = await Promise.all([1, 2, 3].map(() => openStream(`${base}/events`)));
  await Promise.all(streams.map((s) => s.until(() => s.events.length >= 1, 'a first event')));
  await closeWithin(server, 5000);
  await Promise.all(streams.map((s) => s.until(() => s.ended, 'the end of the stream')));
});

it('without a ViewSource the metrics server has no page; page options out of range are a ConfigError naming the field', async () => {
  const server = await startMetricsServer(metrics, '127.0.0.1', 0);
  cleanups.push(() => closeWithin(server, 5000));
  const base = `http://127.0.0.1:${serverAddress(server).port}`;
  assert.equal((await fetch(`${base}/`)).status, 404);
  assert.equal((await fetch(`${base}/events`)).status, 404);
  assert.equal(await (await fetch(`${base}/healthz`)).text(), 'ok\n');
  const { base: withPage } = await serve(changingViews());
  assert.match(await (await fetch(`${withPage}/nope`)).text(), /status page/);
  assert.throws(() => new StatusPage(changingViews(), { maxClients: 0 }), (err: unknown) =>
    err instanceof ConfigError && /maxClients must be an integer >= 1 \(got 0\)/.test(err.message));
  assert.throws(() => new StatusPage(changingViews(), { intervalMs: 2.5 }), /intervalMs/);
});

it('a client that stops reading has its frames skipped (none queued behind an unsent one) and is dropped after stalledClientMs', async () => {
  // A view of ~1 MB: a few frames fill the loopback socket's buffers.
  const big = changingViews();
  const filler = 'x'.repeat(1000);
  const views: ViewSource = {
    view: async () => {
      const v = await big.view();
      return { ...v, listeners: Array.from({ length: 1000 }, (_, i) => `${i} ${filler}`) };
    },
  };
  const page = new StatusPage(views, { intervalMs: 20, heartbeatMs: 20, stalledClientMs: 400 });
  const server = createServer((req, res) => { if (!page.handle(req, res)) res.writeHead(404).end(); });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => { page.close(); await closeWithin(server, 5000); });

  const socket = connect({ port: serverAddress(server).port, host: '127.0.0.1' });
  socket.on('error', () => undefined);
  cleanups.push(() => { socket.destroy(); });
  await once(socket, 'connect');
  socket.pause();
  socket.write('GET /events HTTP/1.1\r\nHost: status\r\n\r\n');
  await waitFor(() => page.stats().framesSkipped > 0, 10_000);
  // Dropped only after stalledClientMs in which every tick found its last frame unsent.
  await waitFor(() => page.stats().dropped === 1, 10_000);
  assert.equal(page.stats().clients, 0);
  await once(socket.resume(), 'close');
});
