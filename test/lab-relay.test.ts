/**
 * The relay in the emulated WAN: real namespaces, nginx, curl, and tcpsplit relays in rc
 * and rs, checked against RTT arithmetic. Delays are the paper's scaled by 0.2 so the
 * test takes seconds.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Lab, PROFILES, scaleDelays, startNginx, applyLinkFlag } from '../src/lab/index.js';
import { startLabRelays } from '../src/demo/lab-relays.js';
import { curlArgs, median, parseCurlTiming } from '../src/demo/curl-timing.js';
import { needsRoot, assertNoLabLeft } from './helpers/lab.js';

const PREFIX = 'trl';
const SCALE = 0.2;
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

test('lab (root, netns): first byte through R_C and R_S matches RTT arithmetic; downloads arrive whole', { skip: needsRoot }, async (t) => {
  const profile = scaleDelays(PROFILES.paper, SCALE);
  const lab = await Lab.create({ prefix: PREFIX, profile });
  cleanups.push(async () => { await lab.destroy(); assertNoLabLeft(PREFIX); });
  const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-lab-relay-'));
  cleanups.push(() => { rmSync(dir, { recursive: true, force: true }); });
  const web = await startNginx(lab, { files: { 'small.bin': 10_000, 'big.bin': 3_000_000 }, port: 80 });
  cleanups.push(() => web.stop());
  const relays = await startLabRelays(lab, dir, 80);
  cleanups.push(() => relays.stop());

  const rtt = (name: keyof typeof profile): number => profile[name].up.delayMs + profile[name].down.delayMs;
  const pathRtt = rtt('client-rc') + rtt('rc-rs') + rtt('rs-server');
  const ttfb = async (url: string): Promise<number> => {
    const runs: number[] = [];
    for (let i = 0; i < 5; i++) runs.push(parseCurlTiming(await lab.exec('client', 'curl', curlArgs(url, 30)), url).ttfbMs);
    return median(runs);
  };
  // End to end: one RTT for the handshake, one for request and response.
  const e2e = await ttfb(web.url('internet', 'small.bin'));
  const expectedE2e = 2 * rtt('internet');
  assert.ok(Math.abs(e2e - expectedE2e) <= Math.max(2, expectedE2e * 0.03), `e2e first byte ${e2e.toFixed(1)} ms, expected ${expectedE2e.toFixed(1)}`);
  // Naive split: each relay opens its next leg only after its own accept (R_C) or the
  // header (R_S), so the three handshakes run in series: 3 one-way trips per link to the
  // request, one more back = 2 x the path RTT, plus the relays' own time.
  const split = await ttfb(relays.url('small.bin'));
  const expectedSplit = 2 * pathRtt;
  assert.ok(split >= expectedSplit - 1 && split <= expectedSplit + 15,
    `tcpsplit first byte ${split.toFixed(1)} ms, expected ${expectedSplit.toFixed(1)} ms plus at most 15 ms of relay time`);

  t.diagnostic(`first byte: e2e ${e2e.toFixed(1)} ms (expected ${expectedE2e.toFixed(1)}), tcpsplit ${split.toFixed(1)} ms (expected ${expectedSplit.toFixed(1)} + relay time)`);

  const big = parseCurlTiming(await lab.exec('client', 'curl', curlArgs(relays.url('big.bin'), 60)), 'big.bin');
  assert.equal(big.httpCode, 200);
  assert.equal(big.bytes, 3_000_000);
  const closed = await relays.rc.waitFor((l) => l.msg === 'connection closed' && l['down'] !== undefined && Number(l['down']) > 3_000_000);
  assert.equal(closed['via'], 'rs');
  assert.equal(closed['outcome'], 'ok');
});

test('lab (root, netns): a download through R_C and R_S over a lossy, rate-capped WAN leg arrives byte for byte', { skip: needsRoot }, async (t) => {
  const prefix = 'trl2';
  // 1% loss each way and a 50 Mbit/s cap on the long leg: retransmissions on every leg.
  const profile = applyLinkFlag(scaleDelays(PROFILES.paper, SCALE), 'rc-rs:rate=50mbit,loss=1%');
  const lab = await Lab.create({ prefix, profile });
  cleanups.push(async () => { await lab.destroy(); assertNoLabLeft(prefix); });
  const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-lab-relay-'));
  cleanups.push(() => { rmSync(dir, { recursive: true, force: true }); });
  const web = await startNginx(lab, { files: { 'f.bin': 4_000_000 }, port: 80 });
  cleanups.push(() => web.stop());
  const relays = await startLabRelays(lab, dir, 80);
  cleanups.push(() => relays.stop());

  const out = join(dir, 'f.out');
  const got = await lab.exec('client', 'curl', ['-sS', '-o', out, '--max-time', '60', relays.url('f.bin')], { timeoutMs: 70_000 });
  assert.equal(got.code, 0, got.stderr);
  const sha = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');
  assert.equal(sha(out), sha(join(web.root, 'f.bin')));
  const lost = lab.linkCounters('rc-rs');
  t.diagnostic(`rc-rs dropped ${lost.up.drops.loss} + ${lost.down.drops.loss} packets to loss`);
  assert.ok(lost.up.drops.loss + lost.down.drops.loss > 0, 'the link did drop packets');
});
