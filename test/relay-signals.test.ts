/**
 * SIGUSR1 must not open Node's inspector (127.0.0.1:9229: any local user could attach and
 * read the key); the relay logs a status line instead.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { forwardingRelayProcess } from './helpers/relay-process.js';

/** Listening sockets on port 9229 that belong to `pid`, from ss. */
function inspectorSocketsOf(pid: number): string[] {
  const out = execFileSync('ss', ['-Hltnp', 'sport = :9229'], { encoding: 'utf8' });
  return out.split('\n').filter((line) => line.includes(`pid=${pid},`));
}

describe('relay signals', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  after(async () => { for (const c of cleanups.reverse()) await c(); });

  it('SIGUSR1 logs a status line and opens no inspector on 127.0.0.1:9229', async () => {
    const { relay } = await forwardingRelayProcess(9);
    cleanups.push(() => relay.stop()); // SIGKILL after 2 s if SIGTERM does not stop it
    const pid = relay.child.pid ?? 0;
    assert.deepEqual(inspectorSocketsOf(pid), [], 'no inspector before the signal');
    relay.child.kill('SIGUSR1');
    const line = await relay.waitFor((l) => l.event === 'status' || String(l.msg).startsWith('Debugger listening'));
    assert.equal(line.event, 'status', `the relay answered SIGUSR1 with: ${String(line.msg)}`);
    assert.equal(line['open'], 0);
    assert.deepEqual(inspectorSocketsOf(pid), [], 'nothing of the relay listens on port 9229');
    assert.ok(!relay.lines.some((l) => String(l.msg).includes('Debugger listening')));
  });
});
