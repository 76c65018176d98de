import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { LabBusyError } from '../src/errors.js';
import { Lab, cleanupStaleLab } from '../src/lab/lab.js';
import { profileFromDelays } from '../src/lab/link-config.js';
import { readState } from '../src/lab/lab-state.js';
import { namespaceExists, processesIn } from '../src/lab/netns.js';
import { assertNoLabLeft, needsRoot, pidAlive } from './helpers/lab.js';
import { pollUntil } from './helpers/net.js';

const PROFILE = profileFromDelays({ 'client-rc': 1 });

after(async () => {
  // Whatever a failed test left behind.
  if (needsRoot !== false) return;
  for (const prefix of ['ttdown', 'ttcrash']) {
    await cleanupStaleLab(prefix).catch(() => undefined);
  }
});

test('lab (root, netns): destroy removes namespaces, devices, state and every process started in the lab', { skip: needsRoot }, async () => {
  const lab = await Lab.create({ prefix: 'ttdown', profile: PROFILE });
  let destroyed = false;
  try {
    const sleeper = lab.spawn('rc', 'sleep', ['60'], { stdio: 'ignore' });
    // A process the lab did not track (it daemonizes): found by its namespace at teardown.
    const r = await lab.exec('server', 'sh', ['-c', 'sleep 60 >/dev/null 2>&1 & echo $!']);
    const orphan = Number(r.stdout.trim());
    assert.ok(sleeper.pid !== undefined && pidAlive(sleeper.pid) && pidAlive(orphan));
    assert.deepEqual(processesIn(lab.namespace('server')), [orphan]);
    assert.equal(readState('ttdown')?.ownerPid, process.pid);
    await lab.destroy();
    destroyed = true;
    await lab.destroy(); // idempotent
    assert.ok(!pidAlive(sleeper.pid), 'tracked child killed');
    assert.ok(!pidAlive(orphan), 'untracked process in a lab namespace killed');
    assertNoLabLeft('ttdown');
    await assert.rejects(lab.exec('client', 'true'), /destroyed/);
  } finally {
    if (!destroyed) await lab.destroy();
  }
});

test('lab (root, netns): a second lab with a live owner\'s prefix is refused', { skip: needsRoot }, async () => {
  const lab = await Lab.create({ prefix: 'ttdown', profile: PROFILE });
  try {
    await assert.rejects(Lab.create({ prefix: 'ttdown', profile: PROFILE }), LabBusyError);
    assert.ok(namespaceExists('ttdown-client'), 'the refused create did not touch the live lab');
    const ping = await lab.exec('client', 'ping', ['-c', '1', '-W', '2', lab.address('rc', 'client')]);
    assert.equal(ping.code, 0);
  } finally {
    await lab.destroy();
  }
  assertNoLabLeft('ttdown');
});

test('lab (root, netns): a lab whose owner was SIGKILLed is cleaned up by the next create with its prefix', { skip: needsRoot }, async () => {
  // The owner: a separate node process that builds the lab, starts a process in it, and waits.
  const script = `
    import { Lab } from ${JSON.stringify(new URL('../src/lab/lab.js', import.meta.url).href)};
    import { profileFromDelays } from ${JSON.stringify(new URL('../src/lab/link-config.js', import.meta.url).href)};
    const lab = await Lab.create({ prefix: 'ttcrash', profile: profileFromDelays({}) });
    lab.spawn('server', 'sleep', ['60'], { stdio: 'ignore' });
    process.stdout.write('ready\\n');
    setInterval(() => {}, 1000);
  `;
  const owner = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [chunk] = (await once(owner.stdout, 'data')) as [Buffer];
  assert.equal(chunk.toString().trim(), 'ready');
  // `ip netns exec` joins the namespace after the owner said ready: polled, bounded.
  const left = await pollUntil(() => processesIn('ttcrash-server'), (pids) => pids.length > 0);
  assert.equal(left.length, 1, 'the owner started one process in the server namespace');
  owner.kill('SIGKILL'); // our own child
  await once(owner, 'exit');
  assert.ok(namespaceExists('ttcrash-client'), 'a crash leaves the namespaces');
  assert.ok(readState('ttcrash') !== undefined, 'and the state');

  const lab = await Lab.create({ prefix: 'ttcrash', profile: PROFILE });
  try {
    assert.ok(left.every((pid) => !pidAlive(pid)), 'the stale lab\'s process was killed');
    const ping = await lab.exec('client', 'ping', ['-c', '1', '-W', '2', lab.address('rc', 'client')]);
    assert.equal(ping.code, 0, 'the new lab works');
  } finally {
    await lab.destroy();
  }
  assertNoLabLeft('ttcrash');
});
