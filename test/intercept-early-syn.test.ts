/**
 * Early SYN through the supervisor, on loopback (root: NFQUEUE and iptables rules in
 * this namespace; only chains named TCPSPLIT-f<port> of relays this test starts, and one
 * orphan it makes itself, are touched):
 * - two relays in one namespace (rc and rs, -L 127.0.0.1:0) each install their own
 *   rules, named by their bound port with their pid in the comments, and stopping one
 *   leaves the other's;
 * - a start removes rules whose recorded owner is dead, never a live relay's;
 * - fail open: with a queue reader killed, SYNs are not held (--queue-bypass once the
 *   socket closes), and connections are made the slow way.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { loadRelayConfig } from '../src/config/load-config.js';
import { silentLogger } from '../src/observe/logger.js';
import { Supervisor } from '../src/worker/supervisor.js';
import { removeSynRules, SynRules } from '../src/intercept/syn-rules.js';
import { needsRoot } from './helpers/lab.js';
import { tcpInfo } from '../src/sys/tcp-info.js';
import { socketFd } from '../src/sys/tcp-socket.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

function mangleRules(): string {
  const v4 = spawnSync('iptables', ['-w', '5', '-t', 'mangle', '-S'], { encoding: 'utf8' }).stdout;
  const v6 = spawnSync('ip6tables', ['-w', '5', '-t', 'mangle', '-S'], { encoding: 'utf8' }).stdout;
  return `${v4}\n${v6}`;
}

async function origin(): Promise<Server> {
  const server = createServer((s) => { s.on('error', () => undefined); s.end('hello\n'); });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => new Promise<void>((r) => { server.close(() => { r(); }); }));
  return server;
}

/** One fetch; `synRetransmits` is the kernel's count (TCP_INFO) at connect, which can only be the SYN's. */
function fetchOnce(port: number): Promise<{ body: string; connectMs: number; synRetransmits: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let connectMs = 0;
    let synRetransmits = Number.NaN;
    let body = '';
    const s = connect(port, '127.0.0.1', () => {
      connectMs = performance.now() - started;
      const fd = socketFd(s);
      if (fd !== undefined) synRetransmits = tcpInfo(fd).totalRetrans;
    });
    s.setEncoding('utf8');
    s.on('data', (c: string) => { body += c; });
    s.on('end', () => { resolve({ body, connectMs, synRetransmits }); });
    s.on('error', reject);
  });
}

async function startRelay(targetPort: number, workers: number): Promise<Supervisor> {
  const { config } = await loadRelayConfig(['-L', `127.0.0.1:0:127.0.0.1:${targetPort}`, '--workers', String(workers), '--log-level', 'error', '--early-syn', 'on'], {});
  const supervisor = await Supervisor.start(config, { logger: silentLogger() });
  cleanups.push(() => supervisor.close());
  return supervisor;
}

describe('early SYN through the supervisor (root, iptables + NFQUEUE on loopback)', { skip: needsRoot }, () => {
  it('two relays in one namespace keep their own rules; a start removes only orphans', async () => {
    const o = await origin();
    const target = (o.address() as AddressInfo).port;
    // An orphan: rules whose recorded owner has exited (as after a SIGKILL).
    const dead = spawn('true');
    await once(dead, 'exit');
    const deadPid = dead.pid ?? 0;
    await SynRules.install({ instance: 'f1', workers: 1, queueBase: 4000, capture: [{ cidr: '127.0.0.9/32', ports: { first: 9, last: 9 } }], owner: deadPid });
    cleanups.push(() => removeSynRules('f1').then(() => undefined));
    assert.match(mangleRules(), new RegExp(`tcpsplit f1 early SYN pid ${deadPid}`));

    const rc = await startRelay(target, 2);
    const rs = await startRelay(target, 1);
    assert.equal(rc.earlySyn, true, 'early SYN runs as root when asked');
    assert.equal(rs.earlySyn, true);
    const rcPort = rc.addresses().forward[0]?.port ?? 0;
    const rsPort = rs.addresses().forward[0]?.port ?? 0;
    const rules = mangleRules();
    assert.doesNotMatch(rules, /tcpsplit f1 early SYN/, 'the orphan was removed');
    assert.match(rules, new RegExp(`TCPSPLIT-f${rcPort} .*--dport ${rcPort} .*early SYN pid ${process.pid}`));
    assert.match(rules, new RegExp(`TCPSPLIT-f${rsPort} .*--dport ${rsPort} .*early SYN pid ${process.pid}`));

    // A live owner's instance is refused, not removed.
    await assert.rejects(SynRules.install({ instance: `f${rcPort}`, workers: 1, queueBase: 4100, capture: [{ cidr: '127.0.0.1/32' }], owner: process.pid + 1_000_000 }),
      { code: 'TCPSPLIT_ERR_SYN_RULES' });
    assert.match(mangleRules(), new RegExp(`TCPSPLIT-f${rcPort}`));

    for (const port of [rcPort, rsPort]) {
      for (let i = 0; i < 20; i++) assert.equal((await fetchOnce(port)).body, 'hello\n');
    }
    await rs.close();
    const after = mangleRules();
    assert.doesNotMatch(after, new RegExp(`TCPSPLIT-f${rsPort}`), 'a stopped relay removes its rules');
    assert.match(after, new RegExp(`TCPSPLIT-f${rcPort}`), 'and leaves the other relay\'s');
    for (let i = 0; i < 5; i++) assert.equal((await fetchOnce(rcPort)).body, 'hello\n');
    await rc.close();
    assert.doesNotMatch(mangleRules(), new RegExp(`TCPSPLIT-f(${rcPort}|${rsPort})`));
  });

  it('fail open: a killed queue reader holds no SYN', async () => {
    const o = await origin();
    const relay = await startRelay((o.address() as AddressInfo).port, 2);
    assert.equal(relay.earlySyn, true);
    const port = relay.addresses().forward[0]?.port ?? 0;
    await relay.killSynReader(0);
    await relay.killSynReader(1);
    // A held SYN would be retransmitted (after 1 s): the kernel counts whether one was.
    const slowest = { ms: 0, synRetransmits: 0 };
    for (let i = 0; i < 40; i++) {
      const r = await fetchOnce(port);
      assert.equal(r.body, 'hello\n');
      slowest.ms = Math.max(slowest.ms, r.connectMs);
      slowest.synRetransmits += r.synRetransmits;
    }
    assert.equal(slowest.synRetransmits, 0, `${slowest.synRetransmits} SYNs were retransmitted (slowest connect ${slowest.ms.toFixed(0)} ms): a SYN was held`);
    await relay.close();
    assert.doesNotMatch(mangleRules(), new RegExp(`TCPSPLIT-f${port}`));
  });
});
