import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadRelayConfig } from '../src/config/load-config.js';
import { describeChanges, diffConfigs, RESTART_ONLY } from '../src/config/config-diff.js';
import { OPTIONS } from '../src/config/relay-options.js';

const KEY_A = 'aa'.repeat(32);
const KEY_B = 'bb'.repeat(32);

async function config(argv: string[], key = KEY_A) {
  return (await loadRelayConfig(argv, { TCPSPLIT_KEY: key })).config;
}

void test('diffConfigs names each changed option as written, the key only as changed', async () => {
  const before = await config(['-L', '8080:198.18.3.2:80', '--peer', 'rs=198.18.2.2:7000', '--route', '198.18.0.0/15=rs']);
  const after = await config(['-L', '8080:198.18.3.3:80', '--peer', 'rs=198.18.2.2:7000', '--route', '198.18.0.0/15=rs',
    '--idle-timeout', '0', '--metrics', '9100', '--log-level', 'debug'], KEY_B);
  const changes = diffConfigs(before, after);
  assert.deepEqual(changes.map((c) => c.option), ['forward', 'key', 'metrics', 'idle-timeout', 'log-level']);
  assert.equal(describeChanges(changes),
    'forward [127.0.0.1:8080:198.18.3.2:80] -> [127.0.0.1:8080:198.18.3.3:80]; key changed; metrics none -> 127.0.0.1:9100; '
    + 'idle-timeout 300000ms -> 0ms; log-level info -> debug');
  assert.ok(!describeChanges(changes).includes(KEY_A) && !describeChanges(changes).includes(KEY_B));
  assert.equal(describeChanges(diffConfigs(before, before)), 'nothing changed');
});

void test('every option a file can set is compared, and restart-only options are real options', async () => {
  const names = new Set(OPTIONS.filter((o) => o.inFile).map((o) => o.name));
  for (const name of RESTART_ONLY) assert.ok(names.has(name), name);
  const before = await config(['--accept', '7000', '--allow', '10.0.0.0/8']);
  const after = await config(['--accept', '7001', '--allow', '10.0.0.0/8', '--deny', '10.1.0.0/16', '--max-clock-skew', '10s']);
  assert.deepEqual(diffConfigs(before, after).map((c) => c.option), ['accept', 'deny', 'max-clock-skew']);
});
