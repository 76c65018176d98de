/**
 * deploy/tcpsplit.service: `systemd-analyze verify` where systemd-analyze exists; the
 * unit's keys (Type=notify, ExecReload, hardening); its capabilities against
 * RELAY_CAPABILITIES (src/sys/capability.ts); and, as root, the relay run as an
 * unprivileged user with exactly those capabilities and no new privileges (as the unit
 * runs it), in a network namespace tsd-<pid> of its own, deleted even when a test fails.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULTS } from '../src/config/relay-config.js';
import { readConfigFile } from '../src/config/config-file.js';
import { RELAY_CAPABILITIES } from '../src/sys/index.js';
import { requestUnix } from '../src/control/unix-http.js';
import { needsRoot } from './helpers/lab.js';
import { RelayProcess, type LogLine } from './helpers/relay-process.js';

const UNIT = fileURLToPath(new URL('../../deploy/tcpsplit.service', import.meta.url));
const CONFIGS = ['relay-client.yaml', 'relay-server.yaml'].map((f) => fileURLToPath(new URL(`../../deploy/${f}`, import.meta.url)));
const text = readFileSync(UNIT, 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-unit-'));
const NS = `tsd-${process.pid}`;
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
  try { execFileSync('ip', ['netns', 'del', NS], { stdio: 'ignore' }); } catch { /* never made */ }
  rmSync(dir, { recursive: true, force: true });
});

/** A unit file as sections of (key, value) in order; systemd's syntax minus line continuations, which the unit does not use. */
function readUnit(unit: string): Map<string, [string, string][]> {
  const sections = new Map<string, [string, string][]>();
  let current: [string, string][] | undefined;
  unit.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const section = /^\[([A-Za-z]+)\]$/.exec(line);
    if (section?.[1] !== undefined) {
      current = [];
      sections.set(section[1], current);
      return;
    }
    const eq = line.indexOf('=');
    assert.ok(current !== undefined && eq > 0 && !line.endsWith('\\'), `line ${i + 1}: ${raw}`);
    current.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  });
  return sections;
}

const unit = readUnit(text);
const service = unit.get('Service') ?? [];
const all = (key: string): string[] => service.filter(([k]) => k === key).map(([, v]) => v);
function one(key: string): string {
  const values = all(key);
  assert.equal(values.length, 1, `[Service] ${key} once, found ${JSON.stringify(values)}`);
  return values[0] ?? '';
}
const words = (key: string): Set<string> => new Set(all(key).flatMap((v) => v.split(/\s+/)).filter((w) => w !== ''));

test('systemd-analyze verify accepts deploy/tcpsplit.service without a warning', (t) => {
  const version = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  if (version.error !== undefined) {
    t.skip(`systemd-analyze is not installed here (${version.error.message}); the unit is still parsed by the tests below`);
    return;
  }
  // verify checks that ExecStart's program exists: point it at this Node if /usr/bin/node is not one.
  const copy = join(dir, 'tcpsplit.service');
  writeFileSync(copy, existsSync('/usr/bin/node') ? text : text.replaceAll('/usr/bin/node', process.execPath));
  const r = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8', timeout: 30_000 });
  const ours = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.includes('tcpsplit'));
  assert.equal(r.status, 0, `${version.stdout.split('\n')[0] ?? ''}: ${r.stderr}`);
  assert.deepEqual(ours, [], 'systemd-analyze prints nothing about the unit (an unknown key or bad value is only a warning)');
});

test('the unit runs the relay as a notify service that reloads with SIGHUP and drains on SIGTERM', () => {
  assert.deepEqual([...unit.keys()], ['Unit', 'Service', 'Install']);
  assert.equal(one('Type'), 'notify');
  assert.equal(one('NotifyAccess'), 'main');
  assert.match(one('ExecStart'), /^\/usr\/bin\/node \/\S+\/dist\/src\/cli\/main\.js relay --config \/etc\/tcpsplit\/relay\.yaml$/);
  assert.match(one('ExecReload'), /^\/bin\/kill -HUP \$MAINPID$/);
  assert.equal(one('KillSignal'), 'SIGTERM');
  assert.ok(Number(one('TimeoutStopSec')) > DEFAULTS.drainTimeoutMs / 1000, `TimeoutStopSec ${one('TimeoutStopSec')} leaves the ${DEFAULTS.drainTimeoutMs} ms drain its time`);
  assert.equal(one('Restart'), 'on-failure');
  assert.equal(one('LimitNOFILE'), '20000');
  assert.equal(one('User'), 'tcpsplit');
  assert.deepEqual(unit.get('Install'), [['WantedBy', 'multi-user.target']]);
});

test('the unit grants exactly RELAY_CAPABILITIES, bounding and ambient, each with a comment saying what uses it', () => {
  const needed = new Set(Object.keys(RELAY_CAPABILITIES));
  assert.deepEqual(words('CapabilityBoundingSet'), needed);
  assert.deepEqual(words('AmbientCapabilities'), needed);
  for (const cap of needed) assert.match(text, new RegExp(`^# ${cap}( \\([^)]*\\))?: \\S`, 'm'), `a comment line starts with '# ${cap}:'`);
  assert.equal(one('NoNewPrivileges'), 'yes');
});

test('the unit is hardened, and its sandbox still lets the relay read /etc/tcpsplit', async () => {
  const expected: Record<string, string> = {
    ProtectSystem: 'strict', ProtectHome: 'yes', PrivateTmp: 'yes', PrivateDevices: 'yes', ProtectKernelTunables: 'yes',
    ProtectKernelModules: 'yes', ProtectControlGroups: 'yes', RestrictNamespaces: 'yes', LockPersonality: 'yes',
    RuntimeDirectory: 'tcpsplit', RuntimeDirectoryMode: '0700', UMask: '0077',
  };
  for (const [key, value] of Object.entries(expected)) assert.equal(one(key), value, key);
  assert.deepEqual(words('RestrictAddressFamilies'), new Set(['AF_UNIX', 'AF_INET', 'AF_INET6', 'AF_NETLINK']));
  assert.deepEqual(all('MemoryDenyWriteExecute'), [], "V8's JIT needs writable code pages");
  assert.deepEqual([...all('InaccessiblePaths'), ...all('TemporaryFileSystem')], [], 'nothing hides /etc');
  // ProtectHome hides /home, /root and /run/user; PrivateTmp gives the relay its own /tmp.
  const hidden = ['/home/', '/root/', '/run/user/', '/tmp/', '/var/tmp/'];
  for (const file of CONFIGS) {
    const keyFile = (await readConfigFile(file)).keyFile;
    assert.equal(keyFile, '/etc/tcpsplit/key', file);
    assert.ok(!hidden.some((h) => keyFile.startsWith(h)), `${file}: the key file is visible inside the unit`);
  }
});

/** The checkout (the relay's code and, for Node 24, its node binary under .cache/). */
const REPO = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
/**
 * Where user nobody sees the checkout: a CI clone may sit under a private directory
 * (mktemp -d is 0700), which nobody cannot cross; a bind mount on a world-readable path,
 * in a mount namespace of the relay's own (gone with it), shows the same files there.
 */
const VIEW = join(dir, 'code');

/** The relay in namespace NS as user nobody with `caps` only and no new privileges, as the unit runs it. */
function relayWithCaps(caps: string[], args: string[]): RelayProcess {
  const set = ['-all', ...caps.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`)].join(',');
  mkdirSync(VIEW, { recursive: true, mode: 0o755 });
  const seen = (p: string): string => (p === REPO || p.startsWith(`${REPO}/`) ? VIEW + p.slice(REPO.length) : p);
  const relay = new RelayProcess(args, {
    spawner: (cmd, a) => spawn('ip', ['netns', 'exec', NS, 'unshare', '--mount', '--propagation', 'private',
      'sh', '-c', 'mount --bind "$1" "$2" && shift 2 && exec "$@"', 'sh', REPO, VIEW,
      'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--no-new-privs',
      `--inh-caps=${set}`, `--ambient-caps=${set}`, `--bounding-set=${set}`, seen(cmd), ...a.map(seen)], { stdio: ['ignore', 'pipe', 'pipe'] }),
  });
  cleanups.push(() => relay.stop(5000));
  return relay;
}

const rootSkip = needsRoot !== false ? needsRoot : spawnSync('setpriv', ['--version']).error === undefined ? false : 'needs setpriv (util-linux)';

void test('as root: with only the unit\'s capabilities, a non-root relay gets steering, early SYN, Turbo-Start, interception and port 80', { skip: rootSkip, timeout: 120_000 }, async () => {
  const ip = (...a: string[]): string => execFileSync('ip', a, { encoding: 'utf8' });
  ip('netns', 'add', NS);
  ip('-n', NS, 'link', 'set', 'lo', 'up');
  // A link toward the peer's address with nobody on it (the pool's connects fail; no dummy module needed).
  ip('-n', NS, 'link', 'add', 'wan0', 'type', 'veth', 'peer', 'name', 'wan1');
  ip('-n', NS, 'link', 'set', 'wan0', 'up');
  ip('-n', NS, 'link', 'set', 'wan1', 'up');
  ip('-n', NS, 'addr', 'add', '198.18.231.1/24', 'dev', 'wan0');
  chmodSync(dir, 0o711);
  const key = join(dir, 'key');
  writeFileSync(key, randomBytes(32), { mode: 0o600 });
  chownSync(key, 65534, 65534);
  // What RuntimeDirectory=tcpsplit gives the relay's user: a private directory for the control socket.
  const runDir = join(dir, 'run');
  mkdirSync(runDir, { mode: 0o700 });
  chownSync(runDir, 65534, 65534);
  const control = join(runDir, 'control.sock');
  const args = ['--control', control, '-L', '127.0.0.1:0:198.18.232.9:80', '--workers', '2', '--early-syn', 'on', '--peer', 'rs=198.18.231.2:7000',
    '--route', '198.18.232.0/24=rs', '--key-file', key, '--intercept', '198.18.233.0/24', '--intercept-listen', '7080',
    '--metrics', '127.0.0.1:80', '--pool-low', '1', '--pool-high', '1', '--connect-timeout', '1s'];

  const relay = relayWithCaps(Object.keys(RELAY_CAPABILITIES), args);
  const ready = await relay.waitFor((l) => l.event === 'ready' || l.level === 60, 60_000);
  assert.equal(ready.event, 'ready', JSON.stringify(relay.lines.slice(-5)));
  const found = (event: string, match: (l: LogLine) => boolean = () => true): LogLine | undefined => relay.lines.find((l) => l.event === event && match(l));
  assert.equal(found('workers')?.['steering'], 'program', 'the SK_REUSEPORT program loads (CAP_BPF)');
  assert.ok(found('early-syn', (l) => l.level === 30) !== undefined, `early SYN is on: ${JSON.stringify(found('early-syn'))}`);
  assert.ok(found('turbo', (l) => l['initCwnd'] !== undefined) !== undefined, `Turbo-Start's route is applied: ${JSON.stringify(found('turbo'))}`);
  assert.ok(found('intercept', (l) => l['table'] !== undefined) !== undefined, 'the nftables table is installed');
  assert.equal((ready['metrics'] as { port?: number } | undefined)?.port, 80, 'metrics bound port 80 (CAP_NET_BIND_SERVICE)');
  assert.deepEqual(relay.lines.filter((l) => typeof l.level === 'number' && l.level >= 40 && l.event !== 'pool'), [], 'no warning but the unreachable peer\'s');
  assert.match(ip('netns', 'exec', NS, 'iptables', '-t', 'mangle', '-S'), /TCPSPLIT-/);
  // The control API answers root (tcpsplit ctl) on the relay user's private socket.
  const view = await requestUnix(control, 'GET', '/v1/view');
  assert.equal(view.status, 200);
  assert.equal((view.body as { features: { earlySyn: boolean } }).features.earlySyn, true);
  assert.equal(statSync(control).mode & 0o777, 0o600);
  await relay.stop(20_000);
  assert.equal(relay.child.exitCode, 0);
  assert.doesNotMatch(ip('netns', 'exec', NS, 'iptables', '-t', 'mangle', '-S'), /TCPSPLIT-/, 'the relay removed its rules with those capabilities too');
  assert.doesNotMatch(ip('netns', 'exec', NS, 'nft', 'list', 'tables'), /tcpsplit_/);

  // The control: without CAP_BPF, the steering program and with it early SYN (two workers) are gone.
  const noBpf = relayWithCaps(Object.keys(RELAY_CAPABILITIES).filter((c) => c !== 'CAP_BPF'), args);
  await noBpf.ready();
  assert.equal(noBpf.lines.find((l) => l.event === 'workers')?.['steering'], 'kernel-hash');
  assert.equal(noBpf.lines.find((l) => l.event === 'early-syn')?.['code'], 'TCPSPLIT_ERR_EARLY_SYN_UNAVAILABLE');
  await noBpf.stop(20_000);
});
