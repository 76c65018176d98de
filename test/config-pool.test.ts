/**
 * The pool and Turbo-Start options (issue 9): flags, YAML, defaults, validation, --check,
 * and the metrics of a relay process with workers (summed by the supervisor).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadRelayConfig } from '../src/config/load-config.js';
import { describeConfig } from '../src/cli/relay-check.js';
import { diffConfigs } from '../src/config/config-diff.js';
import { ConfigError } from '../src/errors.js';
import { KEY_HEX, freePort } from './helpers/net.js';
import { RelayProcess, scrapeMetric } from './helpers/relay-process.js';

const env = { TCPSPLIT_KEY: KEY_HEX };
const base = ['-L', '8080:198.18.3.2:80', '--peer', 'rs=198.18.2.2:7000', '--route', '198.18.3.0/24=rs'];
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

test('defaults: pool and turbo on, 4..16 connections, 60 s, initcwnd/initrwnd 100', async () => {
  const { config } = await loadRelayConfig(base, env);
  assert.deepEqual(
    [config.pool, config.poolLow, config.poolHigh, config.poolMaxIdleMs, config.turbo, config.turboInitCwnd, config.turboInitRwnd],
    [true, 4, 16, 60_000, true, 100, 100],
  );
  const text = describeConfig(config, []);
  assert.match(text, /pool: on, 4 to 16 ready connections per peer and worker, closed unused after 60000 ms/);
  assert.match(text, /turbo: on, routes to rs with initcwnd 100 initrwnd 100/);
});

test('flags and YAML set them; a reload sees the change by option name', async () => {
  const flags = await loadRelayConfig([...base, '--pool', 'off', '--pool-low', '2', '--pool-high', '8', '--pool-max-idle', '30s',
    '--turbo', 'off', '--turbo-initcwnd', '50', '--turbo-initrwnd', '60'], env);
  assert.deepEqual(
    [flags.config.pool, flags.config.poolLow, flags.config.poolHigh, flags.config.poolMaxIdleMs, flags.config.turbo, flags.config.turboInitCwnd, flags.config.turboInitRwnd],
    [false, 2, 8, 30_000, false, 50, 60],
  );
  assert.match(describeConfig(flags.config, []), /pool: off/);
  assert.match(describeConfig(flags.config, []), /turbo: off/);
  const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-config-pool-'));
  cleanups.push(() => { rmSync(dir, { recursive: true, force: true }); });
  const file = join(dir, 'relay.yaml');
  writeFileSync(file, 'pool: false\npool-low: 1\npool-high: 3\npool-max-idle: 5s\nturbo: on\nturbo-initcwnd: 40\nturbo-initrwnd: 41\n');
  const yaml = await loadRelayConfig([...base, '--config', file], env);
  assert.deepEqual(
    [yaml.config.pool, yaml.config.poolLow, yaml.config.poolHigh, yaml.config.poolMaxIdleMs, yaml.config.turbo, yaml.config.turboInitCwnd, yaml.config.turboInitRwnd],
    [false, 1, 3, 5000, true, 40, 41],
  );
  const changes = diffConfigs((await loadRelayConfig(base, env)).config, yaml.config).map((c) => c.option);
  assert.deepEqual(changes, ['pool', 'pool-low', 'pool-high', 'pool-max-idle', 'turbo-initcwnd', 'turbo-initrwnd']);
});

test('--pool-peer: one peer\'s pool unlike the rest (flags and YAML), checked against the peers and the watermarks', async () => {
  const two = [...base, '--peer', 'rs2=198.18.6.2:7000', '--route', '198.18.7.0/24=rs2'];
  const { config } = await loadRelayConfig([...two, '--pool-low', '2', '--pool-peer', 'rs2=low:8,high:32,max-idle:30s', '--pool-peer', 'rs=pool:off'], env);
  assert.deepEqual(config.poolPeers, [{ name: 'rs2', low: 8, high: 32, maxIdleMs: 30_000 }, { name: 'rs', pool: false }]);
  const text = describeConfig(config, []);
  assert.match(text, /pool for rs2: on, 8 to 32 ready connections per worker, closed unused after 30000 ms \(--pool-peer\)/);
  assert.match(text, /pool for rs: off \(--pool-peer\)/);
  const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-pool-peer-'));
  cleanups.push(() => { rmSync(dir, { recursive: true, force: true }); });
  const file = join(dir, 'rc.yaml');
  writeFileSync(file, 'pool-peer: {rs2: "low:8,high:32,max-idle:30s", rs: "pool:off"}\npool-low: 2\n');
  const yaml = await loadRelayConfig([...two, '--config', file], env);
  assert.deepEqual(yaml.config.poolPeers, [{ name: 'rs2', low: 8, high: 32, maxIdleMs: 30_000 }, { name: 'rs', pool: false }]);
  const bad: [string[], RegExp][] = [
    [['--pool-peer', 'nope=low:1'], /--pool-peer nope: no --peer named 'nope'/],
    [['--pool-peer', 'rs=low:20'], /--pool-peer rs: low 20 is above high 16/],
    [['--pool-peer', 'rs=low:1', '--pool-peer', 'rs=high:2'], /given twice/],
    [['--pool-peer', 'rs=deep:9'], /unknown setting 'deep' \(low, high, max-idle, pool\)/],
    [['--pool-peer', 'rs=pool:maybe'], /pool:maybe: neither on nor off/],
    [['--pool-peer', 'rs'], /no '='/],
  ];
  for (const [extra, message] of bad) await assert.rejects(loadRelayConfig([...two, ...extra], env), message, extra.join(' '));
});

test('bad values are ConfigErrors that say what was expected', async () => {
  const bad: string[][] = [['--pool', 'maybe'], ['--turbo', 'yes'], ['--pool-low', '-1'], ['--pool-high', '0'], ['--turbo-initcwnd', '0'],
    ['--turbo-initrwnd', '70000'], ['--pool-max-idle', '0'], ['--pool-low', '9', '--pool-high', '8']];
  for (const extra of bad) {
    await assert.rejects(loadRelayConfig([...base, ...extra], env), ConfigError, extra.join(' '));
  }
});

test('a relay process with workers: pool metrics per peer, summed over workers, on one endpoint', async () => {
  const metrics = await freePort();
  const rs = new RelayProcess(['--accept', '127.0.0.1:0', '--allow', '127.0.0.1/32'], { env });
  cleanups.push(() => rs.stop());
  const rsPort = (await rs.ready()).accept;
  const rc = new RelayProcess(['-L', '127.0.0.1:0:127.0.0.1:9', '--peer', `rs=127.0.0.1:${rsPort}`, '--route', '127.0.0.0/8=rs',
    '--pool-low', '3', '--metrics', `127.0.0.1:${metrics}`], { env });
  cleanups.push(() => rc.stop());
  await rc.ready();
  const workers = Number(rc.lines.find((l) => l['event'] === 'ready')?.['workers']);
  let size = 0;
  for (let i = 0; i < 100 && size !== 3 * workers; i++) {
    size = await scrapeMetric(metrics, 'tcpsplit_pool_size');
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(size, 3 * workers, `pool size over ${workers} worker(s)`);
  for (const name of ['tcpsplit_pool_takes_total', 'tcpsplit_pool_misses_total', 'tcpsplit_pool_stale_total', 'tcpsplit_pool_refill_failures_total',
    'tcpsplit_turbo_route_applied']) {
    assert.equal(await scrapeMetric(metrics, name), 0, name);
  }
  // A pooled leg's TCP_INFO, sampled at scrape: an RTT (loopback: well under 0.5 s, never 0
  // with a sample; in seconds, so a unit slip in the conversion is 1000x off either way; a
  // starved host stretches a loopback sample to some ms), a window (at least the kernel's
  // initial 10), no retransmits on loopback.
  const rtt = await scrapeMetric(metrics, 'tcpsplit_peer_rtt_seconds');
  assert.ok(rtt > 0 && rtt < 0.5, `peer rtt ${String(rtt)} s`);
  assert.ok(await scrapeMetric(metrics, 'tcpsplit_peer_cwnd_segments') >= 10);
  assert.equal(await scrapeMetric(metrics, 'tcpsplit_peer_retransmits'), 0);
  // A loopback peer cannot take a route (the local table wins): said, and the relay runs on.
  assert.ok(rc.lines.some((l) => l['event'] === 'turbo' && typeof l['reason'] === 'string' && l['reason'].includes('local address')));
});
