import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab } from '../src/lab/lab.js';
import { profileFromDelays } from '../src/lab/link-config.js';
import { startNginx, type NginxServer } from '../src/lab/nginx.js';
import { assertNoLabLeft, needsRoot } from './helpers/lab.js';

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

void test('lab (root, netns): curl fetches nginx files from the server over the rc/rs path and the internet link', { skip: needsRoot }, async (t) => {
  assert.ok(lab && web);
  const want = createHash('sha256').update(readFileSync(join(web.root, '1m.bin'))).digest('hex');
  for (const [side, rtt] of [['path', PATH_RTT], ['internet', INTERNET_RTT]] as const) {
    const small = await curl(web.url(side, '10k.bin'));
    const big = await curl(web.url(side, '1m.bin'));
    t.diagnostic(`${side} (RTT ${rtt} ms): 10k connect ${small.connect.toFixed(1)} ms, first byte ${small.ttfb.toFixed(1)} ms; 1m total ${big.total.toFixed(1)} ms`);
    assert.equal(small.code, '200');
    assert.equal(small.size, 10_000);
    assert.equal(big.size, 1_000_000);
    assert.equal(big.sha256, want, 'the bytes arrive intact');
    // RTT arithmetic (paper fig. 1b): connect = 1 RTT, first byte = 2 RTT; never less.
    assert.ok(small.connect >= rtt && small.connect < rtt + 5, `connect ${small.connect} ms vs RTT ${rtt}`);
    assert.ok(small.ttfb >= 2 * rtt && small.ttfb < 2 * rtt + 8, `first byte ${small.ttfb} ms vs 2 RTT ${2 * rtt}`);
  }
  const path = lab.linkCounters('rc-rs');
  assert.ok(path.down.txBytes > 2_000_000, 'the path downloads crossed rc-rs');
});
