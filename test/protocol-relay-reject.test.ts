/**
 * End to end on 127.0.0.1: a relay with --accept receives bad headers and headers for
 * targets its policy refuses. Each must get a reset (never a clean end), no connection to
 * the target, a metric count and a log line with the stable code.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket, type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { pino } from 'pino';
import { Relay } from '../src/relay/relay.js';
import { DEFAULTS, type Endpoint, type RelayConfig } from '../src/config/relay-config.js';
import { encodeHeader } from '../src/protocol/header-encoder.js';
import { AddressType } from '../src/protocol/header-layout.js';
import {
  BadAddressError, BadMagicError, BadVersionError, HeaderAuthError, HeaderReplayError, HeaderStaleError,
  HeaderTimeoutError, HeaderTruncatedError, PolicyDeniedError,
} from '../src/errors.js';
import { AUTH, KEY, OTHER_AUTH, rawHeader } from './protocol-fixtures.js';

/** Long enough that no other case can meet it on a stalled host; the one that waits for it costs this long. */
const HEADER_TIMEOUT_MS = 1000;

/** Collects a relay's pino output as parsed JSON lines. */
class LogSink extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  override _write(chunk: Buffer, _encoding: string, callback: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line !== '') this.lines.push(JSON.parse(line) as Record<string, unknown>);
    }
    callback();
  }
  withOutcome(code: string): Record<string, unknown>[] {
    return this.lines.filter((l) => l.outcome === code);
  }
}

function relayConfig(overrides: Partial<RelayConfig>): RelayConfig {
  return {
    forwards: [],
    peers: [],
    routes: [],
    accept: { host: '127.0.0.1', port: 0 },
    key: KEY,
    insecure: false,
    allow: ['127.0.0.1/32'],
    deny: [],
    metrics: undefined,
    ...DEFAULTS,
    workers: 1,
    configFile: undefined,
    ...overrides,
  };
}

interface RelayUnderTest {
  readonly relay: Relay;
  readonly logs: LogSink;
  readonly port: number;
}

async function startRelay(overrides: Partial<RelayConfig>): Promise<RelayUnderTest> {
  const logs = new LogSink();
  const relay = await Relay.start(relayConfig(overrides), { logger: pino({ level: 'info' }, logs) });
  const accept = relay.addresses().accept;
  assert.ok(accept !== undefined);
  return { relay, logs, port: accept.port };
}

let target: Server;
let targetPort = 0;
let targetConnections = 0;
let strict: RelayUnderTest; // --allow 127.0.0.1/32, short header timeout
let open: RelayUnderTest; // no --allow: only the built-in denies
const clients = new Set<Socket>();

before(async () => {
  target = createServer({ allowHalfOpen: true }, (socket) => {
    targetConnections++;
    socket.on('error', () => undefined);
    socket.resume();
    socket.end();
  });
  await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
  targetPort = (target.address() as AddressInfo).port;
  strict = await startRelay({ headerTimeoutMs: HEADER_TIMEOUT_MS });
  open = await startRelay({ allow: [] });
});

after(async () => {
  for (const socket of clients) socket.destroy();
  await Promise.all([strict.relay.close(), open.relay.close()]);
  await new Promise<void>((resolve) => target.close(() => { resolve(); }));
});

interface ClientResult {
  /** The socket error code, e.g. ECONNRESET; undefined if none. */
  readonly error: string | undefined;
  /** Whether the client saw a clean end (FIN) from the relay. */
  readonly ended: boolean;
}

/** Connects to `port`, writes `bytes` (then FIN if asked), and reports how the connection ended. */
async function probe(port: number, bytes: Buffer, fin = false): Promise<ClientResult> {
  return await new Promise<ClientResult>((resolve) => {
    let error: string | undefined;
    let ended = false;
    const socket = connect({ host: '127.0.0.1', port });
    clients.add(socket);
    socket.on('error', (err: NodeJS.ErrnoException) => { error = err.code ?? err.message; });
    socket.on('end', () => { ended = true; });
    socket.on('close', () => {
      clients.delete(socket);
      resolve({ error, ended });
    });
    socket.resume();
    socket.on('connect', () => {
      if (bytes.length > 0) socket.write(bytes);
      if (fin) socket.end();
    });
  });
}

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await delay(5);
  }
}

/** Counters a test reads before and after one connection. */
async function snapshot(r: RelayUnderTest, code: string): Promise<{ rejects: number; denied: number; nextLegs: number; logs: number; targets: number }> {
  const registry = r.relay.metrics.registry;
  return {
    rejects: await registry.value('tcpsplit_header_rejects_total', { code }),
    denied: await registry.value('tcpsplit_policy_denied_total'),
    nextLegs: await registry.value('tcpsplit_next_leg_total'),
    logs: r.logs.withOutcome(code).length,
    targets: targetConnections,
  };
}

/**
 * Sends `bytes` and checks everything a refused connection must show. `kind` says which
 * metric counts it: a header reject (by code) or a policy denial.
 */
async function expectRefused(
  r: RelayUnderTest, bytes: Buffer, code: string, kind: 'header' | 'policy', options: { fin?: boolean; ipLiteral?: boolean } = {},
): Promise<void> {
  const before = await snapshot(r, code);
  const result = await probe(r.port, bytes, options.fin ?? false);
  assert.deepEqual(result, { error: 'ECONNRESET', ended: false }, 'the client must see a reset, not a clean end');
  await until(() => r.logs.withOutcome(code).length > before.logs, `a log line with outcome ${code}`);
  const now = await snapshot(r, code);
  const line = r.logs.withOutcome(code).at(-1);
  assert.equal(line?.kind, 'accept');
  assert.equal(typeof line.error, 'string');
  assert.equal(line.level, 40);
  assert.equal(now.logs, before.logs + 1);
  assert.equal(now.rejects, before.rejects + (kind === 'header' ? 1 : 0), 'tcpsplit_header_rejects_total');
  assert.equal(now.denied, before.denied + (kind === 'policy' ? 1 : 0), 'tcpsplit_policy_denied_total');
  if (kind === 'header' || options.ipLiteral === true) assert.equal(now.nextLegs, before.nextLegs, 'a next leg was opened');
  // Give a wrongly started connect a moment to land before saying it never happened.
  await delay(20);
  assert.equal(targetConnections, before.targets, 'the target saw a connection');
}

const toTarget = (): Endpoint => ({ host: '127.0.0.1', port: targetPort });

interface HeaderCase {
  readonly name: string;
  readonly bytes: () => Buffer;
  readonly code: string;
  readonly fin?: boolean;
}

const headerCases: readonly HeaderCase[] = [
  { name: 'garbage (an HTTP request)', bytes: () => Buffer.from('GET / HTTP/1.1\r\nHost: example.com\r\n\r\n'), code: BadMagicError.code },
  {
    name: 'bad magic',
    bytes: () => Buffer.concat([Buffer.from('T'), encodeHeader(toTarget(), AUTH).subarray(1)]),
    code: BadMagicError.code,
  },
  { name: 'bad version (3: neither a v1 header nor a v2 pool frame)', bytes: () => rawHeader({ version: 3, timestampMs: Date.now() }), code: BadVersionError.code },
  {
    name: 'bad DNS name (signed)',
    bytes: () => rawHeader({ type: AddressType.DNS, address: Buffer.from('evil host'), port: targetPort, timestampMs: Date.now() }),
    code: BadAddressError.code,
  },
  { name: 'wrong key', bytes: () => encodeHeader(toTarget(), OTHER_AUTH, Date.now(), Buffer.from('hello')), code: HeaderAuthError.code },
  {
    name: 'stale timestamp',
    bytes: () => encodeHeader(toTarget(), AUTH, Date.now() - 2 * DEFAULTS.maxClockSkewMs, Buffer.from('hello')),
    code: HeaderStaleError.code,
  },
  {
    name: 'timestamp from the future',
    bytes: () => encodeHeader(toTarget(), AUTH, Date.now() + 2 * DEFAULTS.maxClockSkewMs),
    code: HeaderStaleError.code,
  },
  { name: 'truncated header followed by FIN', bytes: () => encodeHeader(toTarget(), AUTH).subarray(0, 60), code: HeaderTruncatedError.code, fin: true },
  { name: 'FIN before any byte', bytes: () => Buffer.alloc(0), code: HeaderTruncatedError.code, fin: true },
  { name: `header never completes within ${HEADER_TIMEOUT_MS} ms`, bytes: () => encodeHeader(toTarget(), AUTH).subarray(0, 69), code: HeaderTimeoutError.code },
  { name: 'silence: no byte at all', bytes: () => Buffer.alloc(0), code: HeaderTimeoutError.code },
];

for (const c of headerCases) {
  void test(`relay refuses ${c.name}: reset, ${c.code}, no connect`, async () => {
    await expectRefused(strict, c.bytes(), c.code, 'header', { fin: c.fin ?? false });
  });
}

void test('relay refuses a replayed header: the original connects, the replay is reset with REPLAY', async () => {
  const header = encodeHeader(toTarget(), AUTH);
  const before = targetConnections;
  const original = await probe(strict.port, Buffer.concat([header, Buffer.from('hello')]));
  assert.deepEqual(original, { error: undefined, ended: true });
  assert.equal(targetConnections, before + 1);
  await until(() => strict.logs.withOutcome('ok').length > 0, 'the original connection to be logged');
  await expectRefused(strict, Buffer.concat([header, Buffer.from('hello again')]), HeaderReplayError.code, 'header');
});

interface PolicyCase {
  readonly name: string;
  readonly relay: () => RelayUnderTest;
  readonly host: string;
  readonly ipLiteral: boolean;
}

const policyCases: readonly PolicyCase[] = [
  { name: '127.0.0.2 (only 127.0.0.1/32 is allowed)', relay: () => strict, host: '127.0.0.2', ipLiteral: true },
  { name: '169.254.169.254 (cloud metadata)', relay: () => strict, host: '169.254.169.254', ipLiteral: true },
  { name: '0.0.0.0 (this host)', relay: () => strict, host: '0.0.0.0', ipLiteral: true },
  { name: '127.0.0.1 without --allow', relay: () => open, host: '127.0.0.1', ipLiteral: true },
  { name: '::ffff:127.0.0.1 without --allow (IPv4-mapped loopback)', relay: () => open, host: '::ffff:127.0.0.1', ipLiteral: true },
  { name: '::1 without --allow', relay: () => open, host: '::1', ipLiteral: true },
  { name: 'localhost without --allow (checked after DNS resolution)', relay: () => open, host: 'localhost', ipLiteral: false },
];

for (const c of policyCases) {
  void test(`relay refuses a valid header for ${c.name}: reset, POLICY_DENIED, no connect`, async () => {
    const bytes = encodeHeader({ host: c.host, port: targetPort }, AUTH, Date.now(), Buffer.from('GET / HTTP/1.0\r\n\r\n'));
    await expectRefused(c.relay(), bytes, PolicyDeniedError.code, 'policy', { ipLiteral: c.ipLiteral });
  });
}

void test('control: a valid header for the allowed 127.0.0.1 reaches the target and ends cleanly', async () => {
  const before = await snapshot(strict, 'ok');
  const result = await probe(strict.port, encodeHeader(toTarget(), AUTH, Date.now(), Buffer.from('hello')));
  assert.deepEqual(result, { error: undefined, ended: true });
  assert.equal(targetConnections, before.targets + 1);
  await until(() => strict.logs.withOutcome('ok').length > before.logs, 'an ok log line');
  assert.equal(await strict.relay.metrics.registry.value('tcpsplit_next_leg_total'), before.nextLegs + 1);
});
