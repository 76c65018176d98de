/**
 * Transparent interception in the lab (root, netns): R_C and R_S as routers on the
 * path, REDIRECT mode. curl from the client to the server's own address is split, R_C
 * logs the original destination; the rules are the relay's own table only, and are
 * gone after a clean exit, and after SIGKILL and a restart.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, PROFILES, scaleDelays, startNginx } from '../src/lab/index.js';
import { startTransparentRelays } from '../src/demo/lab-relays.js';
import { RelayProcess } from '../src/demo/relay-process.js';
import { needsRoot, assertNoLabLeft } from './helpers/lab.js';
import { addForeignTable, foreignTables, ourTables, ruleset, sha256File } from './helpers/intercept.js';

const PREFIX = 'tir';
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

test('lab (root, netns): intercept redirect: curl to the server address is split through R_C and R_S; own table only; removed on exit and after SIGKILL', { skip: needsRoot }, async (t) => {
  const lab = await Lab.create({ prefix: PREFIX, profile: scaleDelays(PROFILES.paper, 0.05) });
  cleanups.push(async () => { await lab.destroy(); assertNoLabLeft(PREFIX); });
  const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-intercept-'));
  cleanups.push(() => { rmSync(dir, { recursive: true, force: true }); });
  const web = await startNginx(lab, { files: { 'f.bin': 2_000_000 }, port: 80 });
  cleanups.push(() => web.stop());
  await addForeignTable(lab, 'rc');
  const before = { rc: await ruleset(lab, 'rc'), rs: await ruleset(lab, 'rs') };

  const relays = await startTransparentRelays(lab, dir, { peer: true });
  cleanups.push(() => relays.stop());
  const during = await ruleset(lab, 'rc');
  t.diagnostic(`rc ruleset while running:\n${during}`);
  assert.deepEqual(ourTables(during), ['inet tcpsplit_p7080']);
  assert.deepEqual(foreignTables(during), foreignTables(before.rc), 'the foreign table is untouched');

  const out = join(dir, 'f.out');
  const url = web.url('path', 'f.bin');
  assert.match(url, /^http:\/\/198\.18\.3\.2\//, 'the client addresses the server itself');
  const got = await lab.exec('client', 'curl', ['-sS', '-o', out, '--max-time', '30', url]);
  assert.equal(got.code, 0, got.stderr);
  assert.equal(sha256File(out), sha256File(join(web.root, 'f.bin')));
  const rcLine = await relays.rc.waitFor((l) => l.msg === 'connection closed' && l['kind'] === 'intercept');
  assert.equal(rcLine['target'], `${lab.address('server', 'path')}:80`, 'R_C logs the original destination');
  assert.equal(rcLine['via'], 'rs');
  assert.equal(rcLine['outcome'], 'ok');
  const rsLine = await relays.rs.waitFor((l) => l.msg === 'connection closed' && l['kind'] === 'accept');
  assert.equal(rsLine['target'], `${lab.address('server', 'path')}:80`);

  // The intercept port itself, reached directly (rc's own address is never diverted):
  // conntrack's original destination is then rc's own address, which the built-in
  // policy refuses (ENOENT, without a conntrack entry): a reset, never a loop.
  const direct = await lab.exec('client', 'curl', ['-sS', '-o', '/dev/null', '--max-time', '10', `http://${lab.address('rc', 'client')}:7080/`]);
  assert.notEqual(direct.code, 0);
  const refused = await relays.rc.waitFor((l) => l.msg === 'connection failed' && l['kind'] === 'intercept');
  assert.ok(['TCPSPLIT_ERR_POLICY_DENIED', 'TCPSPLIT_ERR_ORIGINAL_DST'].includes(String(refused['outcome'])), String(refused['outcome']));

  await relays.stop();
  assert.equal(await ruleset(lab, 'rc'), before.rc, 'rc: after a clean exit the ruleset is as before');
  assert.equal(await ruleset(lab, 'rs'), before.rs, 'rs: after a clean exit the ruleset is as before');

  // SIGKILL leaves the table; the next start of the same instance removes it first.
  const rcArgs = [...relays.rcArgs];
  const killed = new RelayProcess(rcArgs, { spawner: (cmd, args) => lab.spawn('rc', cmd, args) });
  cleanups.push(() => killed.stop());
  await killed.ready();
  killed.child.kill('SIGKILL');
  await killed.exited;
  assert.deepEqual(ourTables(await ruleset(lab, 'rc')), ['inet tcpsplit_p7080'], 'SIGKILL left the table');
  const again = await startTransparentRelays(lab, dir, { peer: true });
  cleanups.push(() => again.stop());
  const stale = await again.rc.waitFor((l) => l.event === 'intercept-stale');
  assert.equal(stale['staleTable'], true);
  const second = await lab.exec('client', 'curl', ['-sS', '-o', out, '--max-time', '30', url]);
  assert.equal(second.code, 0, second.stderr);
  assert.equal(sha256File(out), sha256File(join(web.root, 'f.bin')));
  await again.stop();
  assert.equal(await ruleset(lab, 'rc'), before.rc, 'rc: after SIGKILL and a restart the ruleset is as before');
  assert.equal(await ruleset(lab, 'rs'), before.rs);
});
