import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../src/lab/command.js';
import { readState } from '../src/lab/lab-state.js';
import type { LabStatus } from '../src/lab/lab.js';
import { assertNoLabLeft, needsRoot, pidAlive } from './helpers/lab.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const PREFIX = 'ttcli';

function tcpsplit(...args: string[]) {
  return run(process.execPath, [MAIN, ...args], { timeoutMs: 90_000 });
}

after(async () => {
  if (needsRoot === false) await tcpsplit('lab', 'down', '--prefix', PREFIX);
});

test('lab CLI: every command teaches with --help and examples', async () => {
  for (const sub of ['up', 'exec', 'status', 'down']) {
    const r = await tcpsplit('lab', sub, '--help');
    assert.equal(r.code, 0, sub);
    assert.match(r.stdout, /Example/, sub);
  }
  const top = await tcpsplit('lab', '--help');
  assert.match(top.stdout, /lab up .*\n.*lab exec/s);
});

test('lab CLI: bad flags and profiles fail with a clear message and exit 2, before touching anything', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-lab-cli-'));
  try {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'links:\n  rc-rs: { delay: 10 }\n');
    const cases: [string[], RegExp][] = [
      [['lab', 'up', '--link', 'rc-rs:delay=10'], /bad duration '10'.*\[TCPSPLIT_ERR_LAB_CONFIG\]/],
      [['lab', 'up', '--link', 'nowhere:delay=1ms'], /unknown link 'nowhere'/],
      [['lab', 'up', '--profile', bad], /bad\.yaml: link rc-rs: bad duration '10'/],
      [['lab', 'up', '--profile', 'fast'], /unknown profile 'fast'/],
      [['lab', 'up', '--prefix', 'Bad-Prefix'], /bad lab prefix 'Bad-Prefix'/],
      [['lab', 'up', '--delay-scale', 'x'], /--delay-scale 'x' is not a number/],
      [['lab', 'up', '--bogus'], /Unknown option '--bogus'/],
      [['lab', 'exec', 'router', '--', 'true'], /expected a node \(client, rc, rs, server\), got 'router'/],
      [['lab', 'exec', 'client'], /no command/],
    ];
    for (const [args, re] of cases) {
      const r = await tcpsplit(...args);
      assert.equal(r.code, 2, args.join(' '));
      assert.match(r.stderr, re, args.join(' '));
    }
    const unknown = await tcpsplit('lab', 'sideways');
    assert.equal(unknown.code, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('lab CLI (root, netns): up leaves a daemon running; exec, status, down; nothing left after', { skip: needsRoot }, async () => {
  const up = await tcpsplit('lab', 'up', '--prefix', PREFIX, '--profile', 'paper', '--delay-scale', '0.02', '--link', 'internet:rtt=6ms,rate=100mbit');
  assert.equal(up.code, 0, up.stderr);
  assert.match(up.stdout, /lab 'ttcli' is up \(daemon pid \d+/);
  assert.match(up.stdout, /server\s+path\s+198\.18\.3\.2/);
  const state = readState(PREFIX);
  assert.ok(state?.ownerKind === 'daemon' && pidAlive(state.ownerPid));

  const again = await tcpsplit('lab', 'up', '--prefix', PREFIX);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already up.*TCPSPLIT_ERR_LAB_BUSY/);

  const ping = await tcpsplit('lab', 'exec', '--prefix', PREFIX, 'client', '--', 'ping', '-c', '3', '-i', '0.1', '198.18.3.2');
  assert.equal(ping.code, 0, ping.stderr);
  assert.match(ping.stdout, /3 received/);
  const fails = await tcpsplit('lab', 'exec', '--prefix', PREFIX, 'rc', '--', 'sh', '-c', 'exit 7');
  assert.equal(fails.code, 7, 'exec passes the exit code through');

  const status = await tcpsplit('lab', 'status', '--prefix', PREFIX, '--json');
  assert.equal(status.code, 0, status.stderr);
  const s = JSON.parse(status.stdout) as LabStatus;
  const byName = new Map(s.links.map((l) => [l.name, l]));
  assert.ok(Math.abs((byName.get('rc-rs')?.config.up.delayMs ?? 0) - 107.5 * 0.02) < 1e-9, 'scaled paper delay');
  assert.equal(byName.get('internet')?.config.down.rateBitsPerSec, 100e6);
  assert.ok((byName.get('rc-rs')?.counters.up.txPackets ?? 0) >= 3, 'live counters saw the pings');
  const text = await tcpsplit('lab', 'status', '--prefix', PREFIX);
  assert.match(text.stdout, /rc-rs\s+up\s+2\.15ms/);

  // The web server `lab up` starts: its URLs in the output, and a download at once.
  assert.ok(s.web, 'status has the web server');
  assert.deepEqual(s.web.files, { '10kb': 10240, '100kb': 102400, '1mb': 1048576, '10mb': 10485760 });
  assert.equal(s.web.path, 'http://198.18.3.2/');
  assert.match(up.stdout, /web: nginx in 'server' on port 80, files 10kb 100kb 1mb 10mb\n\s+through rc and rs: http:\/\/198\.18\.3\.2\/1mb/);
  assert.match(text.stdout, /direct \(internet\): http:\/\/198\.18\.4\.2\/1mb/);
  for (const base of [s.web.path, s.web.internet]) {
    const got = await tcpsplit('lab', 'exec', '--prefix', PREFIX, 'client', '--', 'curl', '-sS', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', `${base}1mb`);
    assert.equal(got.stdout, '200 1048576', got.stderr);
  }

  const down = await tcpsplit('lab', 'down', '--prefix', PREFIX);
  assert.equal(down.code, 0, down.stderr);
  assert.match(down.stdout, new RegExp(`stopped daemon pid ${state.ownerPid}`));
  assert.ok(!pidAlive(state.ownerPid), 'daemon gone');
  assertNoLabLeft(PREFIX);
  assert.ok(!existsSync(`/run/tcpsplit/lab-${PREFIX}.log`));
  const gone = await tcpsplit('lab', 'status', '--prefix', PREFIX);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /no lab with prefix.*TCPSPLIT_ERR_LAB_NOT_UP/);
  const downAgain = await tcpsplit('lab', 'down', '--prefix', PREFIX);
  assert.match(downAgain.stdout, /nothing to do/);
});

test('lab CLI (root, netns): after the daemon is SIGKILLed, status says stale and the next up cleans it', { skip: needsRoot }, async () => {
  const up = await tcpsplit('lab', 'up', '--prefix', PREFIX, '--profile', 'none');
  assert.equal(up.code, 0, up.stderr);
  const state = readState(PREFIX);
  assert.ok(state);
  process.kill(state.ownerPid, 'SIGKILL'); // verified above as the daemon this test started
  for (let i = 0; i < 100 && pidAlive(state.ownerPid); i++) await new Promise((r) => setTimeout(r, 20));
  const stale = await tcpsplit('lab', 'status', '--prefix', PREFIX);
  assert.equal(stale.code, 1);
  assert.match(stale.stderr, /stale.*TCPSPLIT_ERR_LAB_NOT_UP/);
  const staleExec = await tcpsplit('lab', 'exec', '--prefix', PREFIX, 'client', '--', 'true');
  assert.equal(staleExec.code, 1, 'no commands into a lab whose links carry nothing');
  assert.match(staleExec.stderr, /stale.*TCPSPLIT_ERR_LAB_NOT_UP/);
  const nginxDirs = (): string[] => readdirSync(tmpdir()).filter((n) => n.startsWith(`tcpsplit-nginx-${PREFIX}-`));
  assert.equal(nginxDirs().length, 1, 'the killed daemon\'s web server left its temp dir');
  const up2 = await tcpsplit('lab', 'up', '--prefix', PREFIX, '--profile', 'none');
  assert.equal(up2.code, 0, up2.stderr);
  assert.equal(nginxDirs().length, 1, 'the next up removed the dead one\'s dir (one is the new web server\'s)');
  const ping = await tcpsplit('lab', 'exec', '--prefix', PREFIX, 'client', '--', 'ping', '-c', '1', '198.18.4.2');
  assert.equal(ping.code, 0);
  const state2 = readState(PREFIX);
  assert.ok(state2?.ownerKind === 'daemon' && state2.ownerPid !== state.ownerPid);
  process.kill(state2.ownerPid, 'SIGKILL'); // the new daemon, once more: this time `down` cleans up
  for (let i = 0; i < 100 && pidAlive(state2.ownerPid); i++) await new Promise((r) => setTimeout(r, 20));
  const down = await tcpsplit('lab', 'down', '--prefix', PREFIX);
  assert.equal(down.code, 0);
  assertNoLabLeft(PREFIX);
  assert.deepEqual(nginxDirs(), [], 'nothing of the web server left');
});
