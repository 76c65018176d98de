/**
 * TPROXY interception in the lab (root, netns), and --intercept without CAP_NET_ADMIN.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, PROFILES, scaleDelays, startNginx, startSshd } from '../src/lab/index.js';
import { startTransparentRelays } from '../src/demo/lab-relays.js';
import { CLI } from '../src/demo/relay-process.js';
import { tproxyIds } from '../src/intercept/nft-rules.js';
import { InterceptPermissionError } from '../src/errors.js';
import { needsRoot, assertNoLabLeft } from './helpers/lab.js';
import { ipRules, ourTables, ruleset, sha256File } from './helpers/intercept.js';

const PREFIX = 'tit';
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

test('lab (root, netns): intercept tproxy: curl (IPv4) and ssh (IPv6) through two transparent relays; fwmark rules and routes removed on exit; no CAP_NET_ADMIN fails with a code', { skip: needsRoot }, async (t) => {
  const lab = await Lab.create({ prefix: PREFIX, profile: scaleDelays(PROFILES.paper, 0.05), ipv6: true });
  cleanups.push(async () => { await lab.destroy(); assertNoLabLeft(PREFIX); });
  const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-intercept-tproxy-'));
  cleanups.push(() => { rmSync(dir, { recursive: true, force: true }); });
  const web = await startNginx(lab, { files: { 'f.bin': 2_000_000 }, port: 80 });
  cleanups.push(() => web.stop());
  const sshd = await startSshd(lab, { addresses: [lab.address6('server', 'path')] });
  cleanups.push(() => sshd.stop());

  // Without CAP_NET_ADMIN: refused at start, with the code, and nothing installed.
  const before = await ruleset(lab, 'rc');
  const rulesBefore = await ipRules(lab, 'rc');
  const denied = await lab.exec('rc', 'setpriv', ['--inh-caps=-all', '--bounding-set=-net_admin', process.execPath, CLI, 'relay',
    '--intercept', '198.18.3.0/24', '--intercept-mode', 'tproxy']);
  t.diagnostic(`without CAP_NET_ADMIN: exit ${String(denied.code)}: ${denied.stderr.trim()}`);
  assert.notEqual(denied.code, 0);
  assert.ok(denied.stderr.includes(InterceptPermissionError.code), denied.stderr);
  assert.match(denied.stderr, /CAP_NET_ADMIN/);
  assert.equal(await ruleset(lab, 'rc'), before);

  const relays = await startTransparentRelays(lab, dir, { mode: 'tproxy', ipv6: true });
  cleanups.push(() => relays.stop());
  const { mark, table } = tproxyIds('p7080');
  const during = await ipRules(lab, 'rc');
  t.diagnostic(`rc ip rules while running:\n${during}`);
  assert.equal(during.split(`fwmark 0x${mark.toString(16)} lookup ${table}`).length - 1, 2, 'one fwmark rule per family');
  const route = await lab.exec('rc', 'ip', ['route', 'show', 'table', String(table)]);
  assert.match(route.stdout, /^local default dev lo/m);

  const out = join(dir, 'f.out');
  const got = await lab.exec('client', 'curl', ['-sS', '-o', out, '--max-time', '30', web.url('path', 'f.bin')]);
  assert.equal(got.code, 0, got.stderr);
  assert.equal(sha256File(out), sha256File(join(web.root, 'f.bin')));
  for (const relay of [relays.rc, relays.rs]) {
    const line = await relay.waitFor((l) => l.msg === 'connection closed' && l['kind'] === 'intercept' && l['target'] === '198.18.3.2:80');
    assert.equal(line['outcome'], 'ok');
    assert.ok(Number(line['down']) > 2_000_000);
  }

  const v6 = lab.address6('server', 'path');
  const hello = await lab.exec('client', 'ssh', sshd.sshArgs(v6, 'echo', '$SSH_CONNECTION'), { timeoutMs: 30_000 });
  assert.equal(hello.code, 0, hello.stderr);
  assert.match(hello.stdout, new RegExp(`^${lab.address6('rs', 'server')} \\d+ ${v6} 22\\n$`), 'sshd sees R_S: split');
  await relays.rc.waitFor((l) => l.msg === 'connection closed' && l['kind'] === 'intercept' && l['target'] === `${v6}:22`);

  await relays.stop();
  for (const node of ['rc', 'rs'] as const) {
    assert.deepEqual(ourTables(await ruleset(lab, node)), [], `${node}: table removed`);
    const routes = await lab.exec(node, 'ip', ['route', 'show', 'table', String(table)]);
    assert.equal(routes.stdout, '', `${node}: local route removed`);
  }
  assert.equal(await ipRules(lab, 'rc'), rulesBefore, 'rc: fwmark rules removed');
});
