import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab } from '../src/lab/lab.js';
import { profileFromDelays } from '../src/lab/link-config.js';
import { startNginx, type NginxServer } from '../src/lab/nginx.js';
import { assertFloor, assertNoLabLeft, labTimingTest, needsRoot, retryIfStarved, samplesOf } from './helpers/lab.js';

// One-way delays; path RTT 2 * (3 + 10 + 2) = 30 ms, internet RTT 40 ms.
const PATH_RTT = 30;
const INTERNET_RTT = 40;

let lab: Lab | undefined;
let web: NginxServer | undefined;
before(async () => {
  if (needsRoot !== false) return;
  lab = await Lab.create({ prefix: 'ttweb', profile: profileFromDelays({ 'client-rc': 3, 'rc-rs': 10, 'rs-server': 2, internet: 20 }) });
  web = await startNginx(lab, { files: { '10k.bin': 10_000, '1m.bin': 1_000_000 } });
});
after(async () => {
  await web?.stop();
  await lab?.destroy();
  if (needsRoot === false) assertNoLabLeft('ttweb');
});

interface CurlTimes { code: string; size: number; connect: number; ttfb: number; total: number; sha256: string }

async function curl(url: string): Promise<CurlTimes> {
  assert.ok(lab);
  const r = await lab.exec('client', 'curl', ['-s', '-o', '/dev/null', '-w',
    '%{http_code} %{size_download} %{time_connect} %{time_starttransfer} %{time_total}', url]);
  assert.equal(r.code, 0, r.stderr);
  const [code = '', size = '0', connect = '0', ttfb = '0', total = '0'] = r.stdout.trim().split(' ');
  const body = await lab.exec('client', 'sh', ['-c', `curl -s '${url}' | sha256sum`]);
  return { code, size: Number(size), connect: Number(connect) * 1000, ttfb: Number(ttfb) * 1000, total: Number(total) * 1000, sha256: body.stdout.split(' ')[0] ?? '' };
}

/**
 * Outside the emulator, on the fastest of three fetches: the kernel and curl for a
 * connect, nginx too for a first byte (as in lab-relay.test.ts).
 */
const CONNECT_HOST_MS = 1;
const FIRST_BYTE_HOST_MS = 2.5;

void labTimingTest('lab (root, netns): curl fetches nginx files from the server over the rc/rs path and the internet link', {}, async (t) => {
  assert.ok(lab && web);
  const want = createHash('sha256').update(readFileSync(join(web.root, '1m.bin'))).digest('hex');
  const cases = [['path', PATH_RTT, ['client-rc', 'rc-rs', 'rs-server']], ['internet', INTERNET_RTT, ['internet']]] as const;
  for (const [side, rtt, links] of cases) {
    await retryIfStarved(t, lab, links, async (mark) => {
      assert.ok(lab && web);
      const small: CurlTimes[] = [];
      for (let i = 0; i < 3; i++) small.push(await curl(web.url(side, '10k.bin')));
      const connect = samplesOf(small.map((s) => s.connect));
      const ttfb = samplesOf(small.map((s) => s.ttfb));
      t.diagnostic(`${side} (RTT ${String(rtt)} ms): 10k connect ${connect.summary}, first byte ${ttfb.summary}`);
      for (const s of small) {
        assert.equal(s.code, '200');
        assert.equal(s.size, 10_000);
      }
      // RTT arithmetic (paper fig. 1b): connect = 1 RTT, first byte = 2 RTT; never less.
      const perRtt = 2 * links.length;
      assertFloor(lab, { what: `${side} connect (1 RTT)`, samples: connect, lowerMs: rtt, expectedMs: rtt, traversals: perRtt, links, extraMs: CONNECT_HOST_MS, since: mark });
      assertFloor(lab, { what: `${side} first byte (2 RTT)`, samples: ttfb, lowerMs: 2 * rtt, expectedMs: 2 * rtt, traversals: 2 * perRtt, links, extraMs: FIRST_BYTE_HOST_MS, since: mark });
    });
    const big = await curl(web.url(side, '1m.bin'));
    t.diagnostic(`${side}: 1m total ${big.total.toFixed(1)} ms`);
    assert.equal(big.size, 1_000_000);
    assert.equal(big.sha256, want, 'the bytes arrive intact');
  }
  const path = lab.linkCounters('rc-rs');
  assert.ok(path.down.txBytes > 2_000_000, 'the path downloads crossed rc-rs');
});
