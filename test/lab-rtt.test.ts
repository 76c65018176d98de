import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Lab } from '../src/lab/lab.js';
import { PROFILES, profileFromDelays } from '../src/lab/link-config.js';
import type { LabNode } from '../src/lab/address-plan.js';
import { assertNoLabLeft, assertRttClose, needsRoot, parsePing, type PingStats } from './helpers/lab.js';

async function ping(lab: Lab, from: LabNode, to: string, count: number, intervalS: number): Promise<PingStats> {
  await lab.exec(from, 'ping', ['-c', '2', '-i', '0.05', '-q', to]); // warm-up: route cache, JIT
  const r = await lab.exec(from, 'ping', ['-c', String(count), '-i', String(intervalS), '-q', to], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  return parsePing(r.stdout);
}

// Scaled-down delays: one-way client-rc 5 ms, rc-rs 20 ms, rs-server 4 ms, internet 30 ms.
const ONE_WAY = { 'client-rc': 5, 'rc-rs': 20, 'rs-server': 4, internet: 30 } as const;

let lab: Lab | undefined;
before(async () => {
  if (needsRoot === false) lab = await Lab.create({ prefix: 'ttrtt', profile: profileFromDelays(ONE_WAY) });
});
after(async () => {
  await lab?.destroy();
  if (needsRoot === false) assertNoLabLeft('ttrtt');
});

void test('lab (root, netns): idle ping RTT within 1 ms or 3% on each link and the composed paths', { skip: needsRoot }, async (t) => {
  assert.ok(lab);
  const cases: [string, LabNode, string, number][] = [
    ['client-rc', 'client', lab.address('rc', 'client'), 2 * ONE_WAY['client-rc']],
    ['rc-rs', 'rc', lab.address('rs', 'rc'), 2 * ONE_WAY['rc-rs']],
    ['rs-server', 'rs', lab.address('server', 'path'), 2 * ONE_WAY['rs-server']],
    ['internet', 'client', lab.address('server', 'internet'), 2 * ONE_WAY.internet],
    ['client->server via rc, rs', 'client', lab.address('server', 'path'),
      2 * (ONE_WAY['client-rc'] + ONE_WAY['rc-rs'] + ONE_WAY['rs-server'])],
  ];
  for (const [what, from, to, expected] of cases) {
    const s = await ping(lab, from, to, 20, 0.05);
    t.diagnostic(`${what}: configured ${expected} ms, ping min/avg/max/mdev ${s.minMs}/${s.avgMs}/${s.maxMs}/${s.mdevMs} ms`);
    assert.equal(s.received, s.transmitted);
    assert.ok(s.minMs >= expected - 0.01, `${what}: min ${s.minMs} ms is below the configured ${expected} ms`);
    assertRttClose(s.avgMs, expected, what);
  }
});

void test('lab (root, netns): the client reaches the server through rc and rs (TTL drops by 2) and directly on the internet link', { skip: needsRoot }, async () => {
  assert.ok(lab);
  const path = await lab.exec('client', 'ping', ['-c', '1', lab.address('server', 'path')]);
  assert.match(path.stdout, /ttl=62/);
  const direct = await lab.exec('client', 'ping', ['-c', '1', lab.address('server', 'internet')]);
  assert.match(direct.stdout, /ttl=64/);
  const route = await lab.exec('client', 'ip', ['route', 'get', lab.address('server', 'path')]);
  assert.match(route.stdout, /via 198\.18\.1\.2 dev rc/);
});

void test('lab (root, netns): the paper profile, unscaled: 273.7 ms end to end on both paths', { skip: needsRoot }, async (t) => {
  const paper = await Lab.create({ prefix: 'ttpaper', profile: PROFILES.paper });
  try {
    for (const side of ['path', 'internet'] as const) {
      const s = await ping(paper, 'client', paper.address('server', side), 10, 0.05);
      t.diagnostic(`paper ${side}: ping min/avg/max/mdev ${s.minMs}/${s.avgMs}/${s.maxMs}/${s.mdevMs} ms`);
      assertRttClose(s.avgMs, 273.7, `paper ${side}`);
    }
    const rcRs = await ping(paper, 'rc', paper.address('rs', 'rc'), 10, 0.05);
    t.diagnostic(`paper rc-rs: ping avg ${rcRs.avgMs} ms`);
    assertRttClose(rcRs.avgMs, 215, 'paper rc-rs');
  } finally {
    await paper.destroy();
    assertNoLabLeft('ttpaper');
  }
});
