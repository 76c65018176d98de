/**
 * A real OpenSSH session through two transparent relays with no peer (root, netns):
 * R_C intercepts the client's connection and connects straight to the original
 * destination; R_S, a router on the path, intercepts that leg in turn. A split with no
 * header, over IPv4 and IPv6 (the lab's ULA plan); scp of 10 MB arrives intact.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, openSync, writeSync, closeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, PROFILES, scaleDelays, startSshd } from '../src/lab/index.js';
import { startTransparentRelays } from '../src/demo/lab-relays.js';
import { needsRoot, assertNoLabLeft } from './helpers/lab.js';
import { ourTables, ruleset, sha256File } from './helpers/intercept.js';

const PREFIX = 'tis';
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

test('lab (root, netns): ssh and a 10 MB scp through two transparent relays, IPv4 and IPv6', { skip: needsRoot }, async (t) => {
  const lab = await Lab.create({ prefix: PREFIX, profile: scaleDelays(PROFILES.paper, 0.05), ipv6: true });
  cleanups.push(async () => { await lab.destroy(); assertNoLabLeft(PREFIX); });
  const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-intercept-ssh-'));
  cleanups.push(() => { rmSync(dir, { recursive: true, force: true }); });
  const v4 = lab.address('server', 'path');
  const v6 = lab.address6('server', 'path');
  const sshd = await startSshd(lab, { addresses: [v4, v6] });
  cleanups.push(() => sshd.stop());
  const relays = await startTransparentRelays(lab, dir, { ipv6: true });
  cleanups.push(() => relays.stop());

  const file = join(dir, 'ten.bin');
  const fd = openSync(file, 'w', 0o600);
  for (let i = 0; i < 10; i++) writeSync(fd, randomBytes(1 << 20));
  closeSync(fd);
  const want = sha256File(file);

  for (const [family, host] of [['IPv4', v4], ['IPv6', v6]] as const) {
    const hello = await lab.exec('client', 'ssh', sshd.sshArgs(host, 'echo', 'hello from $SSH_CONNECTION'), { timeoutMs: 30_000 });
    assert.equal(hello.code, 0, `${family} ssh: ${hello.stderr}`);
    t.diagnostic(`${family}: ${hello.stdout.trim()}`);
    // sshd sees R_S's address as the client: the connection was split on the way.
    const rsSide = family === 'IPv4' ? lab.address('rs', 'server') : lab.address6('rs', 'server');
    assert.match(hello.stdout, new RegExp(`^hello from ${rsSide.replace(/\./g, '\\.')} \\d+ ${host.replace(/\./g, '\\.')} 22\\n$`));

    const dest = join(dir, `ten.${family}.out`);
    const started = Date.now();
    const scp = await lab.exec('client', 'scp', sshd.scpArgs(file, `root@[${host}]:${dest}`), { timeoutMs: 60_000 });
    assert.equal(scp.code, 0, `${family} scp: ${scp.stderr}`);
    t.diagnostic(`${family}: scp of 10 MiB took ${Date.now() - started} ms`);
    assert.equal(sha256File(dest), want, `${family}: the copy arrives intact`);

    const target = `${host}:22`; // the connection record's form (IPv6 unbracketed)
    for (const relay of [relays.rc, relays.rs]) {
      const line = await relay.waitFor((l) => l.msg === 'connection closed' && l['kind'] === 'intercept' && l['target'] === target
        && Number(l['up']) > 10_000_000);
      assert.equal(line['via'], 'direct');
      assert.equal(line['outcome'], 'ok');
    }
  }
  await relays.stop();
  assert.deepEqual(ourTables(await ruleset(lab, 'rc')), []);
  assert.deepEqual(ourTables(await ruleset(lab, 'rs')), []);
});
