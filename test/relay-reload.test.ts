/**
 * SIGHUP tells the truth: every option either applies to the running relay (here: the
 * log level, the metrics listener, the key) or the reload is refused, loudly, naming it;
 * and one line says what changed. A real relay process, real signals.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { tcpServer, dial, receiveAll, freePort } from './helpers/net.js';
import { RelayProcess, type LogLine } from './helpers/relay-process.js';


async function scrape(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

function overloadCount(metrics: string): number {
  return Number(/^tcpsplit_overload_total (\d+)$/m.exec(metrics)?.[1] ?? 'NaN');
}

/**
 * Early SYN on where it can run (root: iptables and NFQUEUE). With it on and two workers,
 * this test failed in 2 of 6 runs until it waited for each held client to be admitted:
 * the refused client, right behind it, was sometimes accepted first by the other worker
 * (the worker that got the held client's SYN was busy opening its early leg). The relay
 * promises only that one of two racing clients wins the one slot.
 */
const EARLY_SYN = process.getuid?.() === 0 ? 'on' : 'off';

describe('relay reload (SIGHUP)', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  after(async () => { for (const c of cleanups.reverse()) await c(); });

  it('applies log-level, metrics and key live, logs what changed, and refuses a restart-only change whole', async () => {
    const hold = await tcpServer(() => undefined); // keeps every connection open
    cleanups.push(hold.close);
    const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-reload-'));
    cleanups.push(() => { rmSync(dir, { recursive: true, force: true }); });
    const keyFile = join(dir, 'relay.key');
    const key1 = randomBytes(32).toString('hex');
    writeFileSync(keyFile, key1);
    chmodSync(keyFile, 0o600);
    const [m1, m2] = [await freePort(), await freePort()];
    const file = join(dir, 'relay.yaml');
    const yaml = (level: string, metricsPort: number, extra = ''): string =>
      `forward: ["127.0.0.1:0:127.0.0.1:${hold.port}"]\nmax-connections: 1\nkey-file: relay.key\nearly-syn: ${EARLY_SYN}\n`
      + `log-level: ${level}\nmetrics: "127.0.0.1:${metricsPort}"\n${extra}`;
    writeFileSync(file, yaml('info', m1));
    const relay = new RelayProcess(['--config', file]);
    cleanups.push(() => relay.stop());
    const [port = 0] = (await relay.ready()).forward;
    const isAccept = (l: LogLine): boolean => l.event === 'accept'; // a debug-level line
    // SIGUSR1 logs a status line: once it is read, every line before it has been too.
    const flushed = async (): Promise<void> => {
      const n = relay.lines.filter((l) => l.event === 'status').length;
      relay.child.kill('SIGUSR1');
      await relay.waitFor(() => relay.lines.filter((l) => l.event === 'status').length > n);
    };
    const metricsPort = { now: m1 };
    // The one slot (max-connections 1): freed, then taken again by a new connection, so
    // each phase has an accepted connection to log (or not) at debug.
    // Admitted before the next client comes: with two workers, two accepts race for the
    // one slot (a worker busy opening an early leg may accept second), and the relay
    // promises only that one of them wins.
    const admitted = async (): Promise<Socket> => {
      const s = await dial(port);
      for (let i = 0; i < 200 && !/^tcpsplit_connections_active 1$/m.test(await scrape(metricsPort.now)); i++) await sleep(10);
      return s;
    };
    let held = await admitted();
    const retake = async (): Promise<void> => {
      held.resetAndDestroy(); // a FIN would leave it half-open: the target never closes
      for (let i = 0; i < 200 && !/^tcpsplit_connections_active 0$/m.test(await scrape(metricsPort.now)); i++) await sleep(10);
      held = await admitted();
    };
    cleanups.push(() => { held.destroy(); });
    // Reset at accept: the reset may come before or after 'connect', so no dial() here.
    const refuse = async (): Promise<void> => {
      assert.equal((await receiveAll(connect({ port, host: '127.0.0.1', allowHalfOpen: true }))).outcome, 'ECONNRESET');
    };
    await refuse();
    assert.equal(overloadCount(await scrape(m1)), 1);
    await flushed();
    assert.equal(relay.lines.filter(isAccept).length, 0, 'at info, no debug line');

    writeFileSync(file, yaml('debug', m2));
    const key2 = randomBytes(32).toString('hex');
    writeFileSync(keyFile, key2);
    relay.child.kill('SIGHUP');
    const reloaded = await relay.waitFor((l) => l.event === 'reload');
    assert.equal(reloaded.msg, `config reloaded: key changed; metrics 127.0.0.1:${m1} -> 127.0.0.1:${m2}; log-level info -> debug`);
    assert.deepEqual(reloaded['changed'], ['key', 'metrics', 'log-level']);
    assert.ok(!relay.lines.some((l) => JSON.stringify(l).includes(key2) || JSON.stringify(l).includes(key1)), 'no key material in the log');
    metricsPort.now = m2;
    await refuse();
    assert.equal(overloadCount(await scrape(m2)), 2, '/metrics moved, with its counters');
    await assert.rejects(fetch(`http://127.0.0.1:${m1}/metrics`), 'the old metrics port is closed');
    await retake();
    await relay.waitFor(isAccept); // debug lines now appear

    // --max-clock-skew needs a restart: the whole reload is refused, the log level stays debug.
    writeFileSync(file, yaml('info', m2, 'max-clock-skew: 10s\n'));
    relay.child.kill('SIGHUP');
    const refused = await relay.waitFor((l) => l.event === 'reload' && l['code'] === 'TCPSPLIT_ERR_RESTART_REQUIRED');
    assert.equal(refused['level'], 50, 'an error-level line');
    assert.match(String(refused.msg), /--max-clock-skew 30000ms -> 10000ms: takes effect only at a restart; nothing was reloaded/);
    await retake();
    await relay.waitFor(() => relay.lines.filter(isAccept).length >= 2);
    const metrics = await scrape(m2);
    assert.match(metrics, /^tcpsplit_config_reloads_total\{result="error"\} 1$/m);

    // Back to info: debug lines stop.
    writeFileSync(file, yaml('info', m2));
    relay.child.kill('SIGHUP');
    await relay.waitFor((l) => l.event === 'reload' && l.msg === 'config reloaded: log-level debug -> info');
    const before = relay.lines.filter(isAccept).length;
    await retake();
    await refuse();
    assert.equal(overloadCount(await scrape(m2)), 3);
    await flushed();
    assert.equal(relay.lines.filter(isAccept).length, before, 'at info again, no debug line');
  });

  it('root: a -L listener added by a reload gets early SYN: its SYNs are captured from then on; the queue probe samples without adding events', { skip: EARLY_SYN === 'off' ? 'early SYN needs root' : false }, async () => {
    const target = await tcpServer((s) => { s.end(); });
    cleanups.push(target.close);
    const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-reload-es-'));
    cleanups.push(() => { rmSync(dir, { recursive: true, force: true }); });
    const [metricsPort, added] = [await freePort(), await freePort()];
    const file = join(dir, 'relay.yaml');
    const yaml = (forwards: string[]): string => `forward: ${JSON.stringify(forwards)}\nearly-syn: on\nmetrics: "127.0.0.1:${metricsPort}"\n`;
    const first = `127.0.0.1:0:127.0.0.1:${target.port}`;
    writeFileSync(file, yaml([first]));
    const relay = new RelayProcess(['--config', file]);
    cleanups.push(() => relay.stop());
    await relay.ready();
    await relay.waitFor((l) => l.event === 'early-syn');
    const captured = async (): Promise<number> => Number(/^tcpsplit_early_syn_captured_total (\d+)$/m.exec(await scrape(metricsPort))?.[1] ?? 'NaN');
    const through = async (port: number, n: number): Promise<void> => {
      for (let i = 0; i < n; i++) assert.equal((await receiveAll(connect({ port, host: '127.0.0.1' }))).outcome, 'end');
    };
    const before = await captured();
    // The queue probe (src/intercept/queue-probe.ts) has sampled at start, through the
    // queue, without its SYNs showing as captured ones.
    assert.equal(before, 0, 'no client yet: nothing captured (the probe\'s SYNs are not events)');
    const probes = async (): Promise<number> => Number(/^tcpsplit_early_syn_queue_delay_seconds_count (\d+)$/m.exec(await scrape(metricsPort))?.[1] ?? 'NaN');
    for (let i = 0; i < 100 && !(await probes() >= 1); i++) await sleep(20);
    assert.ok(await probes() >= 1, 'the queue probe sampled');

    writeFileSync(file, yaml([first, `127.0.0.1:${added}:127.0.0.1:${target.port}`]));
    relay.child.kill('SIGHUP');
    await relay.waitFor((l) => l.event === 'reload' && l['code'] === undefined);
    assert.equal(relay.lines.filter((l) => l.event === 'early-syn' && l['queues'] !== undefined).length, 2, 'early SYN started again for the new set of listeners');
    await through(added, 5);
    // SYN events reach the workers a moment after their SYN passed.
    for (let i = 0; i < 100 && await captured() < before + 5; i++) await sleep(20);
    assert.equal(await captured(), before + 5, 'every SYN to the added listener was captured');
  });
});
