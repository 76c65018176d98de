/**
 * Regressions for lab failure modes found in review: each of these broke once.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { Lab, PROFILES, startNginx } from '../src/lab/index.js';
import { rootDeviceName } from '../src/lab/topology.js';
import { listNamespaces } from '../src/lab/netns.js';
import { LabError } from '../src/errors.js';
import { needsRoot, assertNoLabLeft } from './helpers/lab.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

test('lab (root, netns): a device that already has one of the lab\'s names is neither taken over nor deleted', { skip: needsRoot }, async () => {
  const prefix = 'trv1';
  const foreign = rootDeviceName(prefix, 'rs-server', 'a');
  execFileSync('ip', ['tuntap', 'add', 'name', foreign, 'mode', 'tun']); // persistent: TUNSETIFF would attach to it
  cleanups.push(() => { if (existsSync(`/sys/class/net/${foreign}`)) execFileSync('ip', ['tuntap', 'del', 'name', foreign, 'mode', 'tun']); });
  await assert.rejects(Lab.create({ prefix, profile: PROFILES.none }), (err: unknown) => {
    assert.ok(err instanceof LabError);
    assert.match(err.message, /already exists and is not this lab's/);
    return true;
  });
  assert.ok(existsSync(`/sys/class/net/${foreign}`), 'the foreign device survives');
  assert.deepEqual(listNamespaces().filter((n) => n.startsWith(`${prefix}-`)), [], 'no namespaces left');
});

test('lab (root, netns): nginx that cannot bind is an error, even when another server answers on its port', { skip: needsRoot }, async () => {
  const prefix = 'trv2';
  const lab = await Lab.create({ prefix, profile: PROFILES.none });
  cleanups.push(async () => { await lab.destroy(); assertNoLabLeft(prefix); });
  const first = await startNginx(lab, { files: { 'a.bin': 10 } });
  cleanups.push(() => first.stop());
  await assert.rejects(startNginx(lab, { files: { 'b.bin': 10 } }), /nginx exited.*Address already in use/s);
});

test('lab (root, netns): a packet larger than the emulator\'s slots is dropped and counted, never delivered cut short', { skip: needsRoot }, async () => {
  const prefix = 'trv3';
  const lab = await Lab.create({ prefix, profile: PROFILES.none });
  cleanups.push(async () => { await lab.destroy(); assertNoLabLeft(prefix); });
  await lab.exec('client', 'ip', ['link', 'set', 'rc', 'mtu', '4000']);
  await lab.exec('rc', 'ip', ['link', 'set', 'client', 'mtu', '4000']);
  const big = await lab.exec('client', 'ping', ['-c', '2', '-i', '0.2', '-W', '1', '-s', '3000', '-M', 'do', '198.18.1.2']);
  assert.notEqual(big.code, 0, 'oversize pings must not come back');
  const { up } = lab.linkCounters('client-rc');
  assert.equal(up.drops.oversize, 2);
  assert.equal(up.txPackets, 0);
  const small = await lab.exec('client', 'ping', ['-c', '2', '-i', '0.2', '-W', '1', '198.18.1.2']);
  assert.equal(small.code, 0, 'normal packets still pass');
});
