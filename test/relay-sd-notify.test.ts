import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { ServiceNotifier } from '../src/observe/service-notifier.js';
import { monotonicMicroseconds, NotifyReceiver, notifySocketAddress, sendNotify } from '../src/sys/index.js';
import { SdNotifyError } from '../src/errors.js';
import { RelayProcess } from './helpers/relay-process.js';

const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-notify-'));
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});

function receiver(socket: string): NotifyReceiver {
  const r = NotifyReceiver.bind(socket);
  cleanups.push(() => { r.close(); });
  return r;
}

/** The next notification, polled without blocking the event loop (the relay's log pipe must keep flowing). */
async function next(r: NotifyReceiver, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = r.receive();
    if (m !== undefined) return m;
    if (Date.now() > deadline) throw new Error(`no notification on ${r.socket} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * The forward target: it accepts and holds what it is given. A refused target would make the relay reset
 * the test's connection, and under a loaded host that reset can reach the client before its event loop
 * has seen the handshake complete, so connect() reports ECONNRESET (CI run of stop 14).
 */
const held: Socket[] = [];
const target = createServer((s) => { held.push(s); s.on('error', () => undefined); });
await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
const targetPort = (target.address() as { port: number }).port;
cleanups.push(() => {
  for (const s of held) s.destroy();
  return new Promise<void>((resolve) => target.close(() => { resolve(); }));
});

/** A relay with NOTIFY_SOCKET set, forwarding to the target above. */
function relayNotifying(socket: string, extra: string[] = []): RelayProcess {
  const relay = new RelayProcess(['-L', `127.0.0.1:0:127.0.0.1:${targetPort}`, '--early-syn', 'off', '--workers', '1', ...extra], { env: { NOTIFY_SOCKET: socket } });
  cleanups.push(() => relay.stop());
  return relay;
}

async function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.on('connect', () => { s.destroy(); resolve(true); });
    s.on('error', () => { resolve(false); });
  });
}

test('notifySocketAddress: paths carry their NUL, abstract names a leading NUL and no trailing one', () => {
  const table: { socket: string; bytes?: string; error?: RegExp }[] = [
    { socket: '/run/systemd/notify', bytes: '0100' + Buffer.from('/run/systemd/notify\0').toString('hex') },
    { socket: '@sd', bytes: '0100' + '00' + Buffer.from('sd').toString('hex') },
    { socket: 'run/notify', error: /neither an absolute path nor an abstract name/ },
    { socket: '@', error: /does not fit/ },
    { socket: `/${'x'.repeat(107)}`, error: /does not fit/ },
  ];
  for (const { socket, bytes, error } of table) {
    if (error !== undefined) {
      assert.throws(() => notifySocketAddress(socket), (e: unknown) => e instanceof SdNotifyError && error.test(e.message), socket);
    } else {
      assert.equal(notifySocketAddress(socket).toString('hex'), bytes, socket);
    }
  }
  assert.equal(notifySocketAddress(`/${'x'.repeat(106)}`).length, 110, 'the longest path: 107 bytes and its NUL');
});

test('sendNotify and NotifyReceiver carry a datagram, by path and in the abstract namespace', () => {
  for (const socket of [join(dir, 'direct.sock'), `@tcpsplit-test-${randomBytes(6).toString('hex')}`]) {
    const r = receiver(socket);
    assert.equal(r.receive(), undefined, 'nothing yet, and receive() does not block');
    sendNotify(socket, 'READY=1\nSTATUS=x');
    assert.equal(r.receive(), 'READY=1\nSTATUS=x');
    r.close();
    if (!socket.startsWith('@')) assert.equal(existsSync(socket), false, 'close() removes the socket file it bound');
  }
});

test('ServiceNotifier: a no-op without NOTIFY_SOCKET; a failure is logged once with its code and never thrown', () => {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); done(); } });
  const logger = pino({ level: 'info' }, sink);
  const quiet = new ServiceNotifier(logger, {});
  quiet.ready(); quiet.reloading(); quiet.stopping();
  const nobody = new ServiceNotifier(logger, { NOTIFY_SOCKET: join(dir, 'nobody-listens.sock') });
  nobody.ready(); nobody.reloading(); nobody.ready(); nobody.stopping();
  const bad = new ServiceNotifier(logger, { NOTIFY_SOCKET: 'relative.sock' });
  bad.ready(); bad.ready();
  assert.equal(lines.length, 2, JSON.stringify(lines));
  for (const line of lines) {
    assert.equal(line['event'], 'sd-notify');
    assert.equal(line['code'], 'TCPSPLIT_ERR_SD_NOTIFY');
  }
  assert.match(String(lines[0]?.['msg']), /ENOENT|ECONNREFUSED/);
  assert.match(String(lines[1]?.['msg']), /neither an absolute path/);
});

test('the relay notifies: READY=1 when it serves, RELOADING=1 + MONOTONIC_USEC then READY=1 on SIGHUP (applied or refused), STOPPING=1 on SIGTERM', async () => {
  const socket = join(dir, 'notify.sock');
  const r = receiver(socket);
  const config = join(dir, 'relay.yaml');
  writeFileSync(config, 'log-level: info\n');
  const relay = relayNotifying(socket, ['--config', config]);
  const [port] = (await relay.ready()).forward;
  assert.equal(await next(r), 'READY=1');
  assert.ok(port !== undefined && await connects(port), 'READY=1 comes with the listener accepting');

  for (const [what, yaml] of [['applied', 'log-level: debug\n'], ['refused', 'log-level: [not, a, level]\n']] as const) {
    writeFileSync(config, yaml);
    const before = monotonicMicroseconds();
    const reloadLines = relay.lines.length;
    relay.child.kill('SIGHUP');
    const reloading = await next(r);
    const after = monotonicMicroseconds();
    const m = /^RELOADING=1\nMONOTONIC_USEC=(\d+)$/.exec(reloading);
    assert.ok(m?.[1] !== undefined, `${what}: ${JSON.stringify(reloading)}`);
    const usec = BigInt(m[1]);
    assert.ok(usec >= before && usec <= after, `${what}: MONOTONIC_USEC ${usec} is CLOCK_MONOTONIC between ${before} and ${after}`);
    assert.equal(await next(r), 'READY=1', `${what}: READY=1 after the reload`);
    await relay.waitFor((l) => relay.lines.indexOf(l) >= reloadLines
      && (what === 'applied' ? /config reloaded/.test(String(l.msg)) : l.event === 'reload' && /reload failed/.test(String(l.msg))));
  }

  relay.child.kill('SIGTERM');
  assert.equal(await next(r), 'STOPPING=1');
  assert.equal(await relay.exited, 0);
  assert.equal(r.receive(), undefined, 'nothing after STOPPING=1');
});

test('the relay notifies an abstract NOTIFY_SOCKET (@name), as systemd may give one', async () => {
  const socket = `@tcpsplit-test-${randomBytes(6).toString('hex')}`;
  const r = receiver(socket);
  const relay = relayNotifying(socket);
  await relay.ready();
  assert.equal(await next(r), 'READY=1');
  relay.child.kill('SIGTERM');
  assert.equal(await next(r), 'STOPPING=1');
  assert.equal(await relay.exited, 0);
});

test('the relay runs on when NOTIFY_SOCKET leads nowhere, with one warning', async () => {
  const relay = relayNotifying(join(dir, 'nobody.sock'));
  const [port] = (await relay.ready()).forward;
  const warning = await relay.waitFor((l) => l.event === 'sd-notify');
  assert.equal(warning['code'], 'TCPSPLIT_ERR_SD_NOTIFY');
  assert.ok(port !== undefined && await connects(port));
  relay.child.kill('SIGHUP');
  await relay.waitFor((l) => l.event === 'reload');
  relay.child.kill('SIGTERM');
  assert.equal(await relay.exited, 0);
  assert.equal(relay.lines.filter((l) => l.event === 'sd-notify').length, 1, 'one line, not one per notification');
});
