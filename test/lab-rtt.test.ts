import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Lab } from '../src/lab/lab.js';
import { PROFILES, profileFromDelays } from '../src/lab/link-config.js';
import type { LabNode, LinkName } from '../src/lab/address-plan.js';
import { assertFloor, assertNoLabLeft, labTimingTest, needsRoot, pingSamples, retryIfStarved } from './helpers/lab.js';

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

const PATH: readonly LinkName[] = ['client-rc', 'rc-rs', 'rs-server'];

void labTimingTest('lab (root, netns): idle ping RTT on each link and the composed path: never below the configured RTT, floor within the traversal allowance', {}, async (t) => {
  assert.ok(lab);
  const cases: [LabNode, string, number, readonly LinkName[]][] = [
    ['client', lab.address('rc', 'client'), 2 * ONE_WAY['client-rc'], ['client-rc']],
    ['rc', lab.address('rs', 'rc'), 2 * ONE_WAY['rc-rs'], ['rc-rs']],
    ['rs', lab.address('server', 'path'), 2 * ONE_WAY['rs-server'], ['rs-server']],
    ['client', lab.address('server', 'internet'), 2 * ONE_WAY.internet, ['internet']],
    ['client', lab.address('server', 'path'), 2 * (ONE_WAY['client-rc'] + ONE_WAY['rc-rs'] + ONE_WAY['rs-server']), PATH],
  ];
  for (const [from, to, configured, links] of cases) {
    const what = links.length === 1 ? (links[0] ?? '') : 'client->server via rc, rs';
    await retryIfStarved(t, lab, links, async (since) => {
      assert.ok(lab);
      const samples = await pingSamples(lab, from, to, 20, 0.05);
      t.diagnostic(`${what}: configured ${String(configured)} ms, ${samples.summary}`);
      assertFloor(lab, { what, samples, lowerMs: configured, expectedMs: configured, traversals: 2 * links.length, links, since });
    });
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

void labTimingTest('lab (root, netns): the paper profile, unscaled: 273.7 ms end to end on both paths (floor of 10 pings)', {}, async (t) => {
  const paper = await Lab.create({ prefix: 'ttpaper', profile: PROFILES.paper });
  try {
    for (const [side, links] of [['path', PATH], ['internet', ['internet']]] as const) {
      await retryIfStarved(t, paper, links, async (since) => {
        const samples = await pingSamples(paper, 'client', paper.address('server', side), 10, 0.05);
        t.diagnostic(`paper ${side}: ${samples.summary}`);
        assertFloor(paper, { what: `paper ${side}`, samples, lowerMs: 273.7, expectedMs: 273.7, traversals: 2 * links.length, links, since });
      });
    }
    await retryIfStarved(t, paper, ['rc-rs'], async (since) => {
      const rcRs = await pingSamples(paper, 'rc', paper.address('rs', 'rc'), 10, 0.05);
      t.diagnostic(`paper rc-rs: ${rcRs.summary}`);
      assertFloor(paper, { what: 'paper rc-rs', samples: rcRs, lowerMs: 215, expectedMs: 215, traversals: 2, links: ['rc-rs'], since });
    });
  } finally {
    await paper.destroy();
    assertNoLabLeft('ttpaper');
  }
});
