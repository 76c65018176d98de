import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadRelayConfig, RELAY_HELP } from '../src/config/load-config.js';
import { parseConfigText } from '../src/config/config-file.js';
import { DEFAULTS } from '../src/config/relay-config.js';
import { OPTIONS } from '../src/config/relay-options.js';
import { ConfigError, InsecureAcceptError, KeyError } from '../src/errors.js';

let dir = '';
const KEY = Buffer.from('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', 'hex');
const noEnv: NodeJS.ProcessEnv = {};

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tcpsplit-config-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, content: string | Buffer, mode = 0o600): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  await chmod(path, mode);
  return path;
}

void test('flags alone: defaults fill in', async () => {
  const { config, warnings } = await loadRelayConfig(['-L', '0:127.0.0.1:9'], noEnv);
  assert.deepEqual(warnings, []);
  assert.deepEqual(config, {
    forwards: [{ listen: { host: '127.0.0.1', port: 0 }, target: { host: '127.0.0.1', port: 9 } }],
    peers: [], routes: [], accept: undefined, key: undefined, insecure: false, allow: [], deny: [],
    metrics: undefined, ...DEFAULTS, workers: Math.min(availableParallelism(), 256), configFile: undefined, control: { path: '/run/tcpsplit/control.sock', explicit: false },
  });
});

void test('--workers and --backlog: whole numbers in range, YAML keys too; bad values are clear errors', async () => {
  const { config } = await loadRelayConfig(['-L', '0:127.0.0.1:9', '--workers', '3', '--backlog=1024'], noEnv);
  assert.equal(config.workers, 3);
  assert.equal(config.backlog, 1024);
  const yamlPath = await file('workers.yaml', 'forward: ["0:127.0.0.1:9"]\nworkers: 2\nbacklog: 8192\n');
  const fromFile = await loadRelayConfig(['--config', yamlPath], noEnv);
  assert.equal(fromFile.config.workers, 2);
  assert.equal(fromFile.config.backlog, 8192);
  for (const [flag, value] of [['--workers', '0'], ['--workers', 'two'], ['--workers', '1.5'], ['--workers', '257'], ['--backlog', '0'], ['--backlog', '70000']] as const) {
    await assert.rejects(loadRelayConfig(['-L', '0:127.0.0.1:9', flag, value], noEnv),
      (e: unknown) => e instanceof ConfigError && e.message.startsWith(`${flag} '${value}'`) && /expected a whole number from 1 to/.test(e.message), `${flag} ${value}`);
  }
});

void test('YAML file: every option, in its YAML forms', async () => {
  await file('yaml.key', KEY);
  const yamlPath = await file('full.yaml', `
forward:
  - 8080:example.com:80
  - {listen: "[::1]:8443", target: "[2001:db8::1]:443"}
  - {listen: 9000, target: "h:1"}
peer: {rs: "198.18.2.2:7000", r2: "[2001:db8::2]:7000"}
route: {"198.18.0.0/15": rs, "2001:db8::/32": r2, "0.0.0.0/0": direct}
accept: 7000
key-file: yaml.key
insecure: false
allow: 10.0.0.0/8
deny: [10.1.0.0/16]
metrics: "127.0.0.1:9100"
connect-timeout: 5s
idle-timeout: 0
header-timeout: 2000ms
drain-timeout: 1m
keepalive: 20s
max-clock-skew: 10s
log-level: warn
`);
  const { config } = await loadRelayConfig(['--config', yamlPath], noEnv);
  assert.deepEqual(config.forwards.map((f) => [f.listen, f.target]), [
    [{ host: '127.0.0.1', port: 8080 }, { host: 'example.com', port: 80 }],
    [{ host: '::1', port: 8443 }, { host: '2001:db8::1', port: 443 }],
    [{ host: '127.0.0.1', port: 9000 }, { host: 'h', port: 1 }],
  ]);
  assert.deepEqual(config.peers, [
    { name: 'rs', endpoint: { host: '198.18.2.2', port: 7000 } },
    { name: 'r2', endpoint: { host: '2001:db8::2', port: 7000 } },
  ]);
  assert.deepEqual(config.routes, [
    { cidr: '198.18.0.0/15', via: 'rs' }, { cidr: '2001:db8::/32', via: 'r2' }, { cidr: '0.0.0.0/0', via: 'direct' },
  ]);
  assert.deepEqual(config.accept, { host: '0.0.0.0', port: 7000 });
  assert.deepEqual(config.key, KEY);
  assert.equal(config.insecure, false);
  assert.deepEqual([config.allow, config.deny], [['10.0.0.0/8'], ['10.1.0.0/16']]);
  assert.deepEqual(config.metrics, { host: '127.0.0.1', port: 9100 });
  assert.deepEqual(
    [config.connectTimeoutMs, config.idleTimeoutMs, config.headerTimeoutMs, config.drainTimeoutMs, config.keepaliveMs, config.maxClockSkewMs],
    [5000, 0, 2000, 60_000, 20_000, 10_000]);
  assert.equal(config.logLevel, 'warn');
  assert.equal(config.configFile, yamlPath);
});

void test('YAML list forms of peer and route', async () => {
  const yamlPath = await file('lists.yaml', 'insecure: true\nforward: "1:a:1"\npeer: ["rs=1.2.3.4:7000"]\nroute: ["10.0.0.0/8=rs"]\n');
  const { config } = await loadRelayConfig(['--config', yamlPath], noEnv);
  assert.deepEqual(config.peers, [{ name: 'rs', endpoint: { host: '1.2.3.4', port: 7000 } }]);
  assert.deepEqual(config.routes, [{ cidr: '10.0.0.0/8', via: 'rs' }]);
  assert.equal(config.insecure, true);
});

void test('flags replace file scalars and add to file lists', async () => {
  const yamlPath = await file('merge.yaml', `
forward: ["1:a:1"]
peer: {rs: "1.2.3.4:7000"}
allow: [10.0.0.0/8]
accept: 7000
connect-timeout: 5s
log-level: warn
insecure: true
`);
  const { config } = await loadRelayConfig([
    '--config', yamlPath, '-L', '2:b:2', '--peer', 'r2=5.6.7.8:7000', '--route', '10.0.0.0/8=r2',
    '--allow', '192.168.0.0/16', '--accept', '7001', '--log-level', 'debug',
  ], noEnv);
  assert.deepEqual(config.forwards.map((f) => f.target.host), ['a', 'b']);
  assert.deepEqual(config.peers.map((p) => p.name), ['rs', 'r2']);
  assert.deepEqual(config.allow, ['10.0.0.0/8', '192.168.0.0/16']);
  assert.equal(config.accept?.port, 7001);
  assert.equal(config.connectTimeoutMs, 5000);
  assert.equal(config.logLevel, 'debug');
  assert.equal(config.insecure, true);
});

void test('bad YAML files throw ConfigError naming the file and key', async () => {
  const cases: [string, RegExp][] = [
    ['forward: ["1:a:1"]\nlisten: 80\n', /bad\.yaml: unknown key 'listen'/],
    ['forward: ["1:a:1"]\nconfig: other.yaml\n', /unknown key 'config'/],
    ['forward: ["1:a:1"]\nhelp: true\n', /unknown key 'help'/],
    ['forward: ["1:a"]\n', /bad\.yaml: forward '1:a': wrong number of fields; expected \[bind:\]port:host:hostport/],
    ['forward: [{listen: 1}]\n', /needs both listen and target/],
    ['forward: [{listen: 1, target: "a:1", via: x}]\n', /unknown key 'via'/],
    ['forward: ["1:a:1"]\ninsecure: yes\n', /insecure: expected true or false/],
    ['forward: ["1:a:1"]\naccept: [1, 2]\n', /accept: expected \[bind:\]port, got a list/],
    ['forward: ["1:a:1"]\nconnect-timeout: null\n', /connect-timeout: expected .*got null/],
    ['forward: ["1:a:1"]\nconnect-timeout: 1.5ms\n', /whole number of milliseconds/],
    ['forward: ["1:a:1"]\nconnect-timeout: 30\n', /no unit: did you mean 30s or 30ms/],
    ['forward: ["1:a:1"]\npeer: {RS: "1.2.3.4:1"}\n', /peer 'RS=1\.2\.3\.4:1'/],
    ['forward: ["1:a:1"]\nallow: {a: b}\n', /allow: expected CIDR.*got a map/],
    ['forward: ["1:a:1"]\nforward: ["2:b:2"]\n', /not valid YAML/],
    ['forward: [1:a:1\n', /not valid YAML/],
    ['- 1:a:1\n', /expected a map of option: value/],
    ['__proto__: {a: 1}\n', /unknown key '__proto__'/],
  ];
  for (const [text, message] of cases) {
    const path = await file('bad.yaml', text);
    await assert.rejects(loadRelayConfig(['--config', path], noEnv), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.match(err.message, message, text);
      return true;
    });
  }
  await assert.rejects(loadRelayConfig(['--config', join(dir, 'missing.yaml')], noEnv), /cannot read config file/);
});

void test('an empty YAML file is an empty config', async () => {
  assert.deepEqual(await parseConfigText('', 'x.yaml'), { forwards: [], peers: [], routes: [], allow: [], deny: [], intercepts: [] });
  assert.deepEqual((await parseConfigText('# nothing\n', 'x.yaml')).forwards, []);
});

void test('key loading: raw, hex and base64 files, env variables, precedence', async () => {
  const raw = await file('raw.key', KEY);
  const hex = await file('hex.key', `${KEY.toString('hex')}\n`);
  const b64 = await file('b64.key', `  ${KEY.toString('base64')}\r\n`);
  const b64url = await file('b64url.key', KEY.toString('base64url'));
  const wrapped = await file('wrapped.key', `${KEY.toString('base64').slice(0, 20)}\n${KEY.toString('base64').slice(20)}\n`);
  const other = await file('other.key', Buffer.alloc(32, 7));
  const accept = ['--accept', '0', '--allow', '10.0.0.0/8'];
  const cases: [argv: string[], env: NodeJS.ProcessEnv, expected: Buffer][] = [
    [[...accept, '--key-file', raw], {}, KEY],
    [[...accept, '--key-file', hex], {}, KEY],
    [[...accept, '--key-file', b64], {}, KEY],
    [[...accept, '--key-file', b64url], {}, KEY],
    [[...accept, '--key-file', wrapped], {}, KEY],
    [accept, { TCPSPLIT_KEY_FILE: hex }, KEY],
    [accept, { TCPSPLIT_KEY: KEY.toString('hex') }, KEY],
    [accept, { TCPSPLIT_KEY: KEY.toString('base64') }, KEY],
    [[...accept, '--key-file', other], { TCPSPLIT_KEY_FILE: hex, TCPSPLIT_KEY: KEY.toString('hex') }, Buffer.alloc(32, 7)],
    [accept, { TCPSPLIT_KEY_FILE: other, TCPSPLIT_KEY: KEY.toString('hex') }, Buffer.alloc(32, 7)],
    [accept, { TCPSPLIT_KEY_FILE: '', TCPSPLIT_KEY: KEY.toString('hex') }, KEY],
  ];
  for (const [argv, env, expected] of cases) {
    const { config, warnings } = await loadRelayConfig(argv, env);
    assert.deepEqual(config.key, expected, argv.join(' '));
    assert.deepEqual(warnings, []);
  }
});

void test('key loading: bad keys throw KeyError', async () => {
  const short = await file('short.key', Buffer.alloc(15, 1));
  const shortHex = await file('short-hex.key', '00112233445566778899aabbccddee\n');
  const empty = await file('empty.key', '');
  const passphrase = await file('pass.key', 'correct horse battery staple\n');
  const big = await file('big.key', Buffer.alloc(5000, 1));
  const seven = await file('seven.key', '1234567');
  const worldReadable = await file('world.key', KEY, 0o644);
  const cases: [string[], NodeJS.ProcessEnv, RegExp][] = [
    [['--key-file', short], {}, /key from key file \S+short\.key \(15 bytes\) is 15 bytes; at least 16/],
    [['--key-file', shortHex], {}, /\(31 bytes of hex text\) is 15 bytes once decoded as hex; at least 16/],
    // 7 bytes on disk, 5 once decoded: the message must not leave the reader to guess why.
    [['--key-file', seven], {}, /seven\.key \(7 bytes of base64url text\) is 5 bytes once decoded as base64url/],
    [['--key-file', worldReadable], {}, /readable by every user on this host \(mode 0644\); run: chmod 600/],
    [['--key-file', empty], {}, /0 bytes/],
    [['--key-file', passphrase], {}, /neither hex nor base64 \(a passphrase is refused/],
    [['--key-file', big], {}, /larger than 4096 bytes/],
    [['--key-file', dir], {}, /not a regular file/],
    [['--key-file', join(dir, 'missing.key')], {}, /cannot read key file .*ENOENT/],
    [[], { TCPSPLIT_KEY_FILE: join(dir, 'missing.key') }, /cannot read key file/],
    [[], { TCPSPLIT_KEY: 'not a key!' }, /TCPSPLIT_KEY is neither hex nor base64/],
    [[], { TCPSPLIT_KEY: '0011' }, /TCPSPLIT_KEY \(4 characters of hex text\) is 2 bytes once decoded as hex/],
  ];
  for (const [argv, env, message] of cases) {
    await assert.rejects(loadRelayConfig(['--accept', '0', ...argv], env), (err: unknown) => {
      assert.ok(err instanceof KeyError, String(err));
      assert.match(err.message, message);
      return true;
    });
  }
});

void test('key loading: a key file its group can read loads with a warning', async () => {
  const open = await file('open.key', KEY, 0o640);
  const { config, warnings } = await loadRelayConfig(['--accept', '0', '--key-file', open, '--allow', '10.0.0.0/8'], noEnv);
  assert.deepEqual(config.key, KEY);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0] ?? '', /accessible by group or others \(mode 0640\); unless a group is meant to read it, run: chmod 600/);
});

void test('RELAY_HELP says what a key file may hold: a passphrase is refused, not used as raw bytes', async () => {
  const help = RELAY_HELP.replace(/\s+/g, ' ');
  assert.doesNotMatch(help, /key[^.]*: raw bytes, or hex or base64 text/, 'help must not offer "raw bytes" without saying text is refused');
  assert.match(help, /a passphrase\) is refused/);
  const passphrase = await file('help-pass.key', 'correct horse battery staple battery\n');
  await assert.rejects(loadRelayConfig(['--accept', '0', '--key-file', passphrase], noEnv), KeyError);
});

void test('a relative key-file in YAML is relative to the config file', async () => {
  await file('rel.key', KEY);
  const yamlPath = await file('rel.yaml', 'accept: 0\nkey-file: rel.key\n');
  const { config } = await loadRelayConfig(['--config', yamlPath], noEnv);
  assert.deepEqual(config.key, KEY);
});

void test('cross-field validation', async () => {
  const cases: [string[], new (message: string) => Error, RegExp][] = [
    [[], ConfigError, /nothing to do: give at least one -L/],
    [['--insecure'], ConfigError, /nothing to do/],
    [['--accept', '0'], InsecureAcceptError, /--accept needs a pre-shared key/],
    [['-L', '1:a:1', '--peer', 'rs=1.2.3.4:7000'], InsecureAcceptError, /--peer needs a pre-shared key/],
    [['-L', '1:a:1', '--route', '10.0.0.0/8=rs'], ConfigError, /--route 10\.0\.0\.0\/8=rs: no --peer named 'rs'/],
    [['-L', '1:a:1', '--insecure', '--peer', 'rs=1.2.3.4:1', '--peer', 'rs=1.2.3.4:2'], ConfigError, /--peer rs is defined twice/],
    [['-L', '1:a:1', '--insecure', '--peer', 'rs=1.2.3.4:1', '--route', '10.0.0.0/8=rs', '--route', '10.0.0.0/8=direct'],
      ConfigError, /--route 10\.0\.0\.0\/8 is given twice/],
    [['-L', '1:a:1', '-L', '1:b:2'], ConfigError, /-L and -L both listen on 127\.0\.0\.1:1/],
    [['-L', '0.0.0.0:7000:a:1', '--accept', '7000', '--insecure'], ConfigError, /-L and --accept both listen on 0\.0\.0\.0:7000/],
  ];
  for (const [argv, type, message] of cases) {
    await assert.rejects(loadRelayConfig(argv, noEnv), (err: unknown) => {
      assert.ok(err instanceof type, String(err));
      assert.match(err.message, message);
      return true;
    });
  }
  // What is allowed: insecure accept, port 0 listeners twice, repeated identical peer and route.
  const { config } = await loadRelayConfig([
    '--accept', '0', '--insecure', '-L', '0:a:1', '-L', '0:b:1', '--peer', 'rs=1.2.3.4:1', '--peer', 'rs=1.2.3.4:1',
    '--route', '10.0.0.0/8=rs', '--route', '10.0.0.0/8=rs',
  ], noEnv);
  assert.equal(config.insecure, true);
  assert.equal(config.key, undefined);
});

void test('RELAY_HELP names every option and teaches with examples', () => {
  for (const spec of OPTIONS) assert.ok(RELAY_HELP.includes(`--${spec.name}`), spec.name);
  for (const phrase of ['-L 8080:198.18.5.10:80', '--accept 7000', 'head -c 32 /dev/urandom > relay.key; chmod 600 relay.key',
    '--config rc.yaml', 'add to the file\'s lists', 'TCPSPLIT_KEY_FILE', '169.254.0.0/16']) {
    assert.ok(RELAY_HELP.includes(phrase), phrase);
  }
});

void test('the YAML example in RELAY_HELP parses', async () => {
  const start = RELAY_HELP.indexOf('    forward:\n');
  assert.ok(start > 0);
  const yamlText = RELAY_HELP.slice(start).split('\n').map((l) => l.slice(4)).join('\n');
  const options = await parseConfigText(yamlText, 'help');
  assert.equal(options.forwards.length, 2);
  assert.deepEqual(options.routes, [{ cidr: '198.18.0.0/15', via: 'rs' }]);
});

void test("config-file.ts's header example parses, and what it says of bare numbers is what the parser does", async () => {
  const source = readFileSync(fileURLToPath(new URL('../../src/config/config-file.ts', import.meta.url)), 'utf8');
  const header = source.slice(0, source.indexOf('*/'));
  const example = [...header.matchAll(/^ \* {3}(\S.*)$/gm)].map((m) => (m[1] ?? '').replace(/\s+#.*$/, '')).join('\n');
  assert.match(example, /connect-timeout: 5s/);
  await parseConfigText(example, 'header example');
  const claim = /bare number[^\n]*/.exec(header)?.[0] ?? '';
  assert.notEqual(claim, '', 'the header says what a bare number means');
  const bare = (): Promise<unknown> => parseConfigText('connect-timeout: 5', 'bare');
  if (/milliseconds/.test(claim)) assert.equal((await parseConfigText('connect-timeout: 5', 'bare')).connectTimeoutMs, 5, claim);
  else await assert.rejects(bare, /no unit/, claim);
});
