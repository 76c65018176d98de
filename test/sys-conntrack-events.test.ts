/**
 * conntrack NEW events (src/sys/conntrack-events.ts): the codec on hand-made bytes, and,
 * as root, the real socket in a network namespace of this test's own (tsct-<pid>,
 * deleted in `after` even on failure). The namespace is tracked only while a rule uses
 * conntrack, so `before` adds `-m conntrack --ctstate NEW` rules (iptables and ip6tables);
 * the probe process inside it (helpers/conntrack-events-probe.ts) does the work.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CT_NEW_TYPE, parseConntrackMessages, TCP_CONNTRACK_SYN_SENT } from '../src/sys/conntrack-events.js';
import { needsRoot } from './helpers/lab.js';
import type { ConntrackProbeRequest, ConntrackProbeResult } from './helpers/conntrack-events-probe.js';

const PROBE = fileURLToPath(new URL('./helpers/conntrack-events-probe.js', import.meta.url));
const NS = `tsct-${process.pid}`;
const haveIptables = ['/usr/sbin/iptables', '/sbin/iptables'].some((p) => existsSync(p));
const skip = needsRoot !== false ? needsRoot : haveIptables ? false : 'needs iptables (Debian package iptables)';

// ---- the codec ---------------------------------------------------------------------------

function attr(type: number, value: Buffer, nested = false): Buffer {
  const len = 4 + value.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type | (nested ? 0x8000 : 0), 2);
  value.copy(b, 4);
  return b;
}

const u8 = (n: number): Buffer => Buffer.from([n]);
const be16 = (n: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b; };
const be32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(n >>> 0); return b; };

/**
 * One ctnetlink message as the kernel builds it: nlmsghdr, nfgenmsg, CTA_TUPLE_ORIG { IP {src, dst},
 * PROTO {num, sport, dport} }, CTA_PROTOINFO { TCP { STATE } } when `tcpState` is given, CTA_ID.
 */
function ctMessage(opts: { flags: number; family: number; src: Buffer; dst: Buffer; sport: number; dport: number; id: number; tcpState?: number }): Buffer {
  const v6 = opts.family === 10;
  const ip = attr(1, Buffer.concat([attr(v6 ? 3 : 1, opts.src), attr(v6 ? 4 : 2, opts.dst)]), true);
  const proto = attr(2, Buffer.concat([attr(1, u8(6)), attr(2, be16(opts.sport)), attr(3, be16(opts.dport))]), true);
  const info = opts.tcpState === undefined ? [] : [attr(4, attr(1, Buffer.concat([attr(1, u8(opts.tcpState)), attr(2, u8(7))]), true), true)];
  const body = Buffer.concat([attr(1, Buffer.concat([ip, proto]), true), ...info, attr(12, be32(opts.id))]);
  const head = Buffer.alloc(20);
  head.writeUInt32LE(20 + body.length, 0);
  head.writeUInt16LE(CT_NEW_TYPE, 4);
  head.writeUInt16LE(opts.flags, 6);
  head.writeUInt8(opts.family, 16);
  return Buffer.concat([head, body]);
}

test('conntrack events codec: a new entry\'s message gives its original 4-tuple (IPv4, IPv6) and TCP state; an update (no NLM_F_CREATE) and a truncated tail are skipped', () => {
  const created = 0x400 | 0x200;
  const v4 = ctMessage({ flags: created, family: 2, src: Buffer.from([198, 18, 0, 7]), dst: Buffer.from([10, 0, 0, 1]), sport: 40000, dport: 443, id: 0xdeadbeef, tcpState: 1 });
  const update = ctMessage({ flags: 0, family: 2, src: Buffer.from([1, 2, 3, 4]), dst: Buffer.from([5, 6, 7, 8]), sport: 1, dport: 2, id: 1 });
  const v6 = ctMessage({ flags: created, family: 10, src: Buffer.from('fd0074730000000000000000000000aa', 'hex'), dst: Buffer.from('00000000000000000000000000000001', 'hex'), sport: 65535, dport: 80, id: 7 });
  const all = Buffer.concat([v4, update, v6, v4.subarray(0, 30)]);
  const parsed = parseConntrackMessages(all, all.length);
  assert.deepEqual(parsed.events, [
    { family: 4, protocol: 6, saddr: '198.18.0.7', daddr: '10.0.0.1', sport: 40000, dport: 443, id: 0xdeadbeef, tcpState: TCP_CONNTRACK_SYN_SENT },
    { family: 6, protocol: 6, saddr: 'fd00:7473::aa', daddr: '::1', sport: 65535, dport: 80, id: 7, tcpState: undefined },
  ]);
  assert.equal(parsed.skipped, 1, 'the update');
});

// ---- the kernel (root) -------------------------------------------------------------------

function deleteNamespace(): void {
  spawnSync('ip', ['netns', 'del', NS], { stdio: 'ignore' });
}

function inNs(...args: string[]): void {
  execFileSync('ip', ['netns', 'exec', NS, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}

before(() => {
  if (skip !== false) return;
  deleteNamespace();
  try {
    execFileSync('ip', ['netns', 'add', NS]);
    execFileSync('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
    inNs('iptables', '-w', '5', '-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'ACCEPT');
    inNs('ip6tables', '-w', '5', '-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'ACCEPT');
  } catch (err) {
    deleteNamespace();
    throw err;
  }
});
after(deleteNamespace);

function probe(req: ConntrackProbeRequest): ConntrackProbeResult {
  const r = spawnSync('ip', ['netns', 'exec', NS, process.execPath, PROBE, JSON.stringify(req)], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, `probe failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as ConntrackProbeResult;
}

for (const [family, host] of [[4, '127.0.0.1'], [6, '::1']] as const) {
  test(`conntrack events (root, netns): IPv${family}: one connect to a listener yields exactly one NEW event, with its 4-tuple and state SYN_SENT`, { skip }, (t) => {
    const r = probe({ host, readMs: 300 });
    t.diagnostic(`client ${r.client.saddr}:${r.client.sport} -> ${r.client.daddr}:${r.client.dport}; events ${JSON.stringify(r.events)}; drops ${r.drops}, skipped ${r.skipped}`);
    assert.equal(r.events.length, 1, 'exactly one NEW event in the namespace');
    const [e] = r.events;
    assert.deepEqual(e && { family: e.family, protocol: e.protocol, saddr: e.saddr, sport: e.sport, daddr: e.daddr, dport: e.dport },
      { family, protocol: 6, ...r.client });
    assert.equal(typeof e?.id, 'number');
    assert.equal(e?.tcpState, TCP_CONNTRACK_SYN_SENT, 'the entry was made by the SYN');
    assert.equal(r.drops, 0);
    assert.equal(r.overruns, 0);
  });
}
