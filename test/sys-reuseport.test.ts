import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { BpfLoadError } from '../src/errors.js';
import { steer } from '../src/net/steer.js';
import { encodeInsns, insn, loadProgram } from '../src/sys/bpf.js';
import { ReuseportGroup, socketCookie } from '../src/sys/reuseport-steering.js';
import { createListenerFd, listenOnFd } from '../src/sys/socket-factory.js';
import { needsRoot } from './helpers/lab.js';

const cleanups: (() => void)[] = [];
after(() => {
  for (const c of cleanups.splice(0).reverse()) {
    try { c(); } catch { /* already closed */ }
  }
});

interface Tally { accepted: number; steered: number; perWorker: number[] }

/** N listeners of one port; each counts connections and whether steer() names it. */
class Listeners {
  readonly servers: (net.Server | undefined)[] = [];
  readonly fds: number[] = [];
  port = 0;
  tally: Tally;
  constructor(readonly host: string, readonly workers: number, readonly group: ReuseportGroup | undefined) {
    this.tally = { accepted: 0, steered: 0, perWorker: new Array<number>(workers).fill(0) };
  }

  async start(index: number): Promise<void> {
    const fd = createListenerFd({ host: this.host, port: this.port, reusePort: true, ...(this.host === '::' ? { v6Only: false } : {}) });
    const server = net.createServer((s) => {
      s.on('error', () => undefined);
      this.tally.accepted++;
      this.tally.perWorker[index] = (this.tally.perWorker[index] ?? 0) + 1;
      if (steer({ address: s.remoteAddress ?? '', port: s.remotePort ?? 0 }, this.workers) === index) this.tally.steered++;
      s.destroy();
    });
    listenOnFd(server, fd);
    await once(server, 'listening');
    cleanups.push(() => server.close());
    this.port = (server.address() as net.AddressInfo).port;
    this.group?.addListener(index, fd);
    this.servers[index] = server;
    this.fds[index] = fd;
  }

  async stop(index: number): Promise<void> {
    const server = this.servers[index];
    assert.ok(server);
    server.close();
    await once(server, 'close');
    this.servers[index] = undefined;
  }

  reset(): void {
    this.tally = { accepted: 0, steered: 0, perWorker: new Array<number>(this.workers).fill(0) };
  }
}

/**
 * `count` connections to `host`, 25 at a time; resolves when each was closed by the
 * server. `source(n)` picks the n-th connection's local address (kernel's choice if unset).
 */
async function connectMany(host: string, port: number, count: number, source?: (n: number) => string): Promise<void> {
  let next = 0;
  async function one(): Promise<void> {
    while (next < count) {
      const n = next++;
      const localAddress = source?.(n);
      const c = net.connect(localAddress === undefined ? { port, host } : { port, host, localAddress });
      c.on('error', () => undefined);
      c.resume();
      await once(c, 'close');
    }
  }
  await Promise.all(Array.from({ length: 25 }, one));
}

async function steeredAcrossRestart(t: test.TestContext, host: string, clientHost: string, workers: number): Promise<void> {
  const group = new ReuseportGroup(workers);
  cleanups.push(() => { group.close(); });
  const l = new Listeners(host, workers, group);
  for (let i = 0; i < workers; i++) await l.start(i);
  for (let i = 0; i < workers; i++) assert.equal(group.listenerCookie(i), socketCookie(l.fds[i] ?? -1), `slot ${i} holds listener ${i}`);

  await connectMany(clientHost, l.port, 1000);
  t.diagnostic(`${host} x${workers}: accepted ${l.tally.accepted}, on steer()'s listener ${l.tally.steered}, per listener ${l.tally.perWorker.join(' ')}`);
  assert.equal(l.tally.accepted, 1000);
  assert.equal(l.tally.steered, 1000, 'every connection landed on the listener steer() names');

  // A worker restart: listener 1 goes away (the kernel empties its slot) and comes back with a new socket.
  await l.stop(1);
  assert.equal(group.listenerCookie(1), undefined, 'closing a listener empties its slot');
  await l.start(1);
  assert.equal(group.listenerCookie(1), socketCookie(l.fds[1] ?? -1));
  l.reset();
  await connectMany(clientHost, l.port, 100);
  t.diagnostic(`${host} x${workers} after restarting listener 1: accepted ${l.tally.accepted}, on steer()'s listener ${l.tally.steered}, per listener ${l.tally.perWorker.join(' ')}`);
  assert.equal(l.tally.accepted, 100);
  assert.equal(l.tally.steered, 100, 'still steered after the restart');
}

test('reuseport (root): 2 listeners on 127.0.0.1, 1000 connections land per steer(), and 100 more after a restart', { skip: needsRoot }, async (t) => {
  await steeredAcrossRestart(t, '127.0.0.1', '127.0.0.1', 2);
});

test('reuseport (root): 3 listeners on 127.0.0.1, 1000 connections land per steer(), and 100 more after a restart', { skip: needsRoot }, async (t) => {
  await steeredAcrossRestart(t, '127.0.0.1', '127.0.0.1', 3);
});

test('reuseport (root): 3 listeners on 0.0.0.0, 600 clients from 600 addresses in 127/8 land per steer()', { skip: needsRoot }, async (t) => {
  const group = new ReuseportGroup(3);
  cleanups.push(() => { group.close(); });
  const l = new Listeners('0.0.0.0', 3, group);
  for (let i = 0; i < 3; i++) await l.start(i);
  await connectMany('127.0.0.1', l.port, 600, (n) => `127.${(n * 37) % 256}.${(n * 101) % 256}.${1 + (n % 250)}`);
  t.diagnostic(`600 source addresses: accepted ${l.tally.accepted}, on steer()'s listener ${l.tally.steered}, per listener ${l.tally.perWorker.join(' ')}`);
  assert.equal(l.tally.accepted, 600);
  assert.equal(l.tally.steered, 600);
});

test('reuseport (root): 3 listeners on ::1 (the program folds the IPv6 address)', { skip: needsRoot }, async (t) => {
  await steeredAcrossRestart(t, '::1', '::1', 3);
});

test('reuseport (root): 3 dual-stack listeners on ::, IPv4 clients steered as their ::ffff: address', { skip: needsRoot }, async (t) => {
  await steeredAcrossRestart(t, '::', '127.0.0.1', 3);
});

test('reuseport (root): the verifier accepts the program and says how much it checked', { skip: needsRoot }, (t) => {
  const group = new ReuseportGroup(4);
  try {
    const summary = group.verifierLog.split('\n').find((line) => line.startsWith('processed '));
    t.diagnostic(`verifier: ${summary ?? group.verifierLog}`);
    assert.match(summary ?? '', /^processed \d+ insns/);
  } finally {
    group.close();
  }
});

test('reuseport (root): a program the verifier refuses is a BpfLoadError carrying the verifier log', { skip: needsRoot }, () => {
  // r0 = *(u32 *)(ctx + 1000): past the end of sk_reuseport_md.
  const bad = encodeInsns([insn(0x61, 0, 1, 1000, 0), insn(0x95, 0, 0, 0, 0)]);
  assert.throws(() => loadProgram(21, bad, 'tcpsplit_bad'), (e: unknown) =>
    e instanceof BpfLoadError && e.code === 'TCPSPLIT_ERR_BPF_LOAD' && /EACCES|EINVAL/.test(e.message) && /invalid bpf_context access/.test(e.message));
});

test('reuseport (root): without the program, a restart moves connections (measured, for contrast)', { skip: needsRoot }, async (t) => {
  const workers = 3;
  const l = new Listeners('127.0.0.1', workers, undefined);
  for (let i = 0; i < workers; i++) await l.start(i);
  await connectMany('127.0.0.1', l.port, 300);
  const before = l.tally.steered;
  await l.stop(1);
  await l.start(1);
  l.reset();
  await connectMany('127.0.0.1', l.port, 300);
  t.diagnostic(`plain SO_REUSEPORT x3: on steer()'s listener ${before}/300 before a restart, ${l.tally.steered}/300 after`);
  assert.equal(l.tally.accepted, 300);
});

test('reuseport (root): an empty slot falls back to the kernel hash: its connections are served elsewhere, not refused', { skip: needsRoot }, async (t) => {
  const group = new ReuseportGroup(3);
  cleanups.push(() => { group.close(); });
  const l = new Listeners('127.0.0.1', 3, group);
  for (let i = 0; i < 3; i++) await l.start(i);
  assert.equal(group.removeListener(1), true);
  assert.equal(group.removeListener(1), false, 'already empty');
  await connectMany('127.0.0.1', l.port, 300);
  t.diagnostic(`slot 1 empty: accepted ${l.tally.accepted}/300, on steer()'s listener ${l.tally.steered}, per listener ${l.tally.perWorker.join(' ')}`);
  assert.equal(l.tally.accepted, 300, 'every connection was served');
  assert.ok(l.tally.steered < 300, "steer()'s picks of worker 1 went to other listeners");
  group.addListener(1, l.fds[1] ?? -1);
  l.reset();
  await connectMany('127.0.0.1', l.port, 100);
  assert.equal(l.tally.steered, 100, 'steered again once the slot is refilled');
  assert.throws(() => { group.addListener(3, l.fds[0] ?? -1); }, RangeError);
});
