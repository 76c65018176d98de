import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { once } from 'node:events';
import { tcpServer, dial, receiveAll, KEY_HEX } from './helpers/net.js';
import { RelayProcess, CLI, forwardingRelayProcess } from './helpers/relay-process.js';

function run(args: string[], env: NodeJS.ProcessEnv = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 10_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A server that answers every connection with `tag`, slowly if asked, then ends. */
function taggedServer(tag: string, chunks = 1, intervalMs = 0) {
  return tcpServer((socket) => {
    let n = 0;
    const tick = (): void => {
      socket.write(`${tag}${n}\n`);
      if (++n < chunks) setTimeout(tick, intervalMs);
      else socket.end();
    };
    tick();
  });
}

describe('tcpsplit relay, the command', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  after(async () => { for (const c of cleanups.reverse()) await c(); });

  it('--help teaches: options and examples, exit 0', () => {
    const r = run(['relay', '--help']);
    assert.equal(r.code, 0);
    for (const word of ['-L', '--peer', '--route', '--accept', '--key-file', '--allow', '--deny', 'Examples']) {
      assert.ok(r.stdout.includes(word), `help mentions ${word}`);
    }
  });

  it('--check validates, explains and binds nothing; a broken config exits 2', () => {
    const ok = run(['relay', '-L', '127.0.0.1:1:198.18.3.2:80', '--peer', 'rs=198.18.2.2:7000', '--route', '198.18.0.0/15=rs', '--check'], { TCPSPLIT_KEY: KEY_HEX });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /config OK/);
    assert.match(ok.stdout, /route 198\.18\.0\.0\/15 -> peer rs/);
    assert.match(ok.stdout, /key: 32 bytes/);
    const bad = run(['relay', '-L', '8080:198.18.3.2:80', '--route', '198.18.0.0/15=nope', '--check']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /no --peer named 'nope'.*TCPSPLIT_ERR_CONFIG/);
  });

  it('a bad flag is a usage error with a stable code and exit 2', () => {
    const r = run(['relay', '-L', 'nonsense']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /TCPSPLIT_ERR_CONFIG/);
    assert.match(r.stderr, /-L/);
  });

  it('a metrics port in use is a listen error with its code, not a crash', async () => {
    const busy = await tcpServer(() => undefined);
    cleanups.push(busy.close);
    const r = run(['relay', '-L', '127.0.0.1:0:127.0.0.1:9', '--metrics', `127.0.0.1:${busy.port}`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot listen on 127\.0\.0\.1:\d+ \(metrics\): EADDRINUSE \[TCPSPLIT_ERR_LISTEN\]/);
  });

  it('--accept without a key refuses to start', () => {
    const r = run(['relay', '--accept', '127.0.0.1:0'], { TCPSPLIT_KEY: '', TCPSPLIT_KEY_FILE: '' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /TCPSPLIT_ERR_NO_KEY/);
  });

  it('SIGTERM stops accepting and lets open connections finish', async () => {
    const server = await taggedServer('slow', 8, 50);
    cleanups.push(server.close);
    const { relay, port } = await forwardingRelayProcess(server.port);
    cleanups.push(() => relay.stop());
    const client = await dial(port);
    const receiving = receiveAll(client);
    await once(client, 'data');
    relay.child.kill('SIGTERM');
    await relay.waitFor((l) => l.event === 'drain');
    const refused = connect({ port, host: '127.0.0.1' });
    const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNREFUSED', 'no new connections while draining');
    const got = await receiving;
    assert.equal(got.outcome, 'end');
    client.end(); // our direction is open until we close it; the relay waits for it
    assert.equal(await relay.exited, 0);
    assert.ok(relay.lines.some((l) => l.msg === 'connection closed' && l['outcome'] === 'ok'));
  });

  it('past --drain-timeout, connections still open are reset, not closed', async () => {
    let reached = (): void => undefined;
    const atTarget = new Promise<void>((resolve) => { reached = resolve; });
    const server = await tcpServer(() => { reached(); }); // never answers
    cleanups.push(server.close);
    const { relay, port } = await forwardingRelayProcess(server.port, ['--drain-timeout', '200ms']);
    cleanups.push(() => relay.stop());
    const client = await dial(port);
    await relay.waitFor((l) => l.event === 'ready');
    // The next leg reached the target: the relay accepted the client (a client still in the
    // listen queue at SIGTERM is reset by the kernel, and leaves no record to check).
    await atTarget;
    relay.child.kill('SIGTERM');
    const got = await receiveAll(client);
    assert.equal(got.outcome, 'ECONNRESET');
    assert.equal(await relay.exited, 0);
    assert.ok(relay.lines.some((l) => l['outcome'] === 'TCPSPLIT_ERR_DRAIN_TIMEOUT'));
  });

  it('SIGHUP reloads the config file without dropping open connections', async () => {
    const a = await taggedServer('A', 6, 50);
    const b = await taggedServer('B');
    cleanups.push(a.close, b.close);
    const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-test-'));
    cleanups.push(() => { rmSync(dir, { recursive: true, force: true }); });
    const file = join(dir, 'relay.yaml');
    writeFileSync(file, `forward:\n  - "127.0.0.1:0:127.0.0.1:${a.port}"\nlog-level: info\n`);
    const relay = new RelayProcess(['--config', file, '--metrics', '127.0.0.1:0']);
    cleanups.push(() => relay.stop());
    const [port = 0] = (await relay.ready()).forward;
    const metricsPort = ((await relay.waitFor((l) => l.event === 'ready'))['metrics'] as { port: number }).port;

    const first = await dial(port);
    const firstGot = new Promise<string>((resolve) => { let t = ''; first.on('data', (c: Buffer) => { t += c.toString(); }); first.on('end', () => { resolve(t); }); });
    await once(first, 'data');
    first.end();

    writeFileSync(file, `forward:\n  - "127.0.0.1:0:127.0.0.1:${b.port}"\nlog-level: info\n`);
    relay.child.kill('SIGHUP');
    await relay.waitFor((l) => l.event === 'reload');

    const second = await dial(port); // same listening socket, new target
    second.end();
    const secondGot = await new Promise<string>((resolve) => { let t = ''; second.on('data', (c: Buffer) => { t += c.toString(); }); second.on('end', () => { resolve(t); }); });
    assert.equal(secondGot, 'B0\n');
    assert.equal(await firstGot, 'A0\nA1\nA2\nA3\nA4\nA5\n', 'the connection opened before the reload finished untouched');

    // A broken config is refused and the running one stays.
    writeFileSync(file, 'forward: [ "not a forward" ]\n');
    relay.child.kill('SIGHUP');
    const failed = await relay.waitFor((l) => l.event === 'reload' && l['code'] === 'TCPSPLIT_ERR_CONFIG');
    assert.match(String(failed.msg), /keeping the running config/);
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(metrics, /^tcpsplit_config_reloads_total\{result="ok"\} 1$/m);
    assert.match(metrics, /^tcpsplit_config_reloads_total\{result="error"\} 1$/m, 'a file that does not load counts as a failed reload');
    const third = await dial(port);
    third.end();
    assert.equal((await receiveAll(third)).bytes, 3);
  });

  it('runs with a key from the environment and logs one line per connection', async () => {
    const server = await taggedServer('x');
    cleanups.push(server.close);
    const rs = new RelayProcess(['--accept', '127.0.0.1:0', '--allow', '127.0.0.1/32'], { env: { TCPSPLIT_KEY: KEY_HEX } });
    cleanups.push(() => rs.stop());
    const { accept } = await rs.ready();
    const rc = new RelayProcess(['-L', `127.0.0.1:0:127.0.0.1:${server.port}`, '--peer', `rs=127.0.0.1:${accept ?? 0}`, '--route', '0.0.0.0/0=rs'], { env: { TCPSPLIT_KEY: KEY_HEX } });
    cleanups.push(() => rc.stop());
    const [port = 0] = (await rc.ready()).forward;
    const client = await dial(port);
    client.end();
    const got = await receiveAll(client);
    assert.equal(got.bytes, 3);
    const line = await rc.waitFor((l) => l.msg === 'connection closed');
    assert.equal(line['via'], 'rs');
    assert.equal(line['outcome'], 'ok');
    assert.equal(line['down'], 3);
    assert.equal(rc.lines.filter((l) => l.msg === 'connection closed').length, 1);
  });
});
