import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Lab } from '../src/lab/lab.js';
import { applyLinkFlag, profileFromDelays } from '../src/lab/link-config.js';
import { assertNoLabLeft, labTimingTest, latenessReport, needsRoot, parsePing, retryIfStarved, traversalAllowanceMs } from './helpers/lab.js';

const P = 0.1;
const N = 2000;

let lab: Lab | undefined;
before(async () => {
  if (needsRoot !== false) return;
  let profile = profileFromDelays({ 'client-rc': 1, 'rc-rs': 1 });
  profile = applyLinkFlag(profile, 'client-rc:up.loss=10%');
  profile = applyLinkFlag(profile, 'rc-rs:rate=20mbit,queue=50');
  profile = applyLinkFlag(profile, 'rs-server:delay=10ms,jitter=5ms');
  lab = await Lab.create({ prefix: 'ttloss', profile });
});
after(async () => {
  await lab?.destroy();
  if (needsRoot === false) assertNoLabLeft('ttloss');
});

void test('lab (root, netns): 10% loss one way: ping loss and the drop counter within a binomial bound', { skip: needsRoot }, async (t) => {
  assert.ok(lab);
  const r = await lab.exec('client', 'ping', ['-c', String(N), '-i', '0.001', '-W', '1', '-q', lab.address('rc', 'client')], { timeoutMs: 60_000 });
  const s = parsePing(r.stdout);
  const lost = s.transmitted - s.received;
  const sd = Math.sqrt(N * P * (1 - P));
  t.diagnostic(`${lost} of ${s.transmitted} lost (expected ${N * P} +- ${(4.5 * sd).toFixed(0)} at 4.5 sd)`);
  assert.equal(s.transmitted, N);
  assert.ok(Math.abs(lost - N * P) <= 4.5 * sd, `lost ${lost} of ${N}`);
  const c = lab.linkCounters('client-rc');
  assert.equal(c.up.drops.loss, lost, 'every lost ping is a loss drop on client-rc up');
  assert.equal(c.down.drops.loss, 0, 'down has no loss configured');
  assert.equal(c.down.rxPackets, s.received, 'every reply crossed client-rc down');
});

void labTimingTest('lab (root, netns): 5 ms jitter on a 10 ms one-way link: RTTs spread within [10, 30] ms, no reordering', {}, async (t) => {
  assert.ok(lab);
  await retryIfStarved(t, lab, ['rs-server'], async (since) => {
    assert.ok(lab);
    const r = await lab.exec('rs', 'ping', ['-c', '50', '-i', '0.02', lab.address('server', 'path')], { timeoutMs: 30_000 });
    const s = parsePing(r.stdout);
    // 2 ms apart, well inside the 20 ms jitter range: an emulator that reordered would show it here.
    const burst = await lab.exec('rs', 'ping', ['-c', '100', '-i', '0.002', lab.address('server', 'path')], { timeoutMs: 30_000 });
    const seqs = [...burst.stdout.matchAll(/icmp_seq=(\d+)/g)].map((m) => Number(m[1]));
    assert.equal(seqs.length, 100);
    t.diagnostic(`ping min/avg/max/mdev ${String(s.minMs)}/${String(s.avgMs)}/${String(s.maxMs)}/${String(s.mdevMs)} ms`);
    assert.equal(s.received, 50);
    const rtts = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
    assert.equal(rtts.length, 50);
    // Each direction adds 10 +- 5 ms (never more: the order-keeping raise only lifts a
    // due time to an earlier packet's, itself within range), never less. Lateness is
    // one-sided and heavy-tailed, so one sample of 50 may exceed the top by more than
    // the allowance; two may not. The median is the sum of two uniform delays' (sd of
    // the median of 50: 0.7 ms).
    const top = 30 + traversalAllowanceMs(lab, ['rs-server'], 2, undefined, since) + 0.1; // ping prints 0.1 ms here
    const context = `RTTs ${rtts.join(' ')}\n  ${latenessReport(lab, ['rs-server'])}`;
    assert.ok(s.minMs >= 10, `min ${String(s.minMs)} ms below 2 x (10 - 5) ms\n  ${context}`);
    assert.ok((rtts[48] ?? Infinity) <= top, `second-highest RTT ${String(rtts[48])} ms above 2 x (10 + 5) ms + ${(top - 30).toFixed(2)} ms\n  ${context}`);
    assert.ok(s.mdevMs > 1, 'the delay varies');
    const median = ((rtts[24] ?? NaN) + (rtts[25] ?? NaN)) / 2;
    assert.ok(Math.abs(median - 20) < 3, `median ${median.toFixed(2)} ms not centred on 2 x 10 ms\n  ${context}`);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'replies in order');
  });
});

void labTimingTest('lab (root, netns): UDP over a 20 Mbit/s cap with a 50-packet queue: tail drops, delivered rate at the cap', {}, async (t) => {
  assert.ok(lab);
  await retryIfStarved(t, lab, ['rc-rs'], async () => {
    assert.ok(lab);
    const before = lab.linkCounters('rc-rs');
    const server = lab.spawn('rs', 'iperf3', ['-s', '-1', '-p', '5202'], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 50; i++) {
        if ((await lab.exec('rs', 'sh', ['-c', 'ss -Hlun | grep -q ":5202 " || ss -Hltn | grep -q ":5202 "'])).code === 0) break;
        await new Promise((r2) => setTimeout(r2, 50));
      }
      const r = await lab.exec('rc', 'iperf3', ['-c', lab.address('rs', 'rc'), '-p', '5202', '-u', '-b', '40M', '-l', '1400', '-t', '3', '-J'], { timeoutMs: 30_000 });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const j = JSON.parse(r.stdout) as { end: { sum: { bits_per_second: number; lost_percent: number } } };
      const c = lab.linkCounters('rc-rs');
      const queueDrops = c.up.drops.queue - before.up.drops.queue;
      const delivered = j.end.sum.bits_per_second * (1 - j.end.sum.lost_percent / 100);
      const expected = 20e6 * 1400 / 1428; // UDP payload of 1428-byte IP packets at 20 Mbit/s
      t.diagnostic(`offered ${(j.end.sum.bits_per_second / 1e6).toFixed(1)} Mbit/s, delivered ${(delivered / 1e6).toFixed(2)} Mbit/s of payload ` +
        `(cap: ${(expected / 1e6).toFixed(2)}), lost ${j.end.sum.lost_percent.toFixed(1)}%; queue drops ${String(queueDrops)}`);
      assert.ok(queueDrops > 0, 'tail drops counted');
      assert.equal(c.up.drops.loss, 0);
      // Never above the cap (2% for the edges of iperf3's 3 s window), and at least 90% of it.
      const detail = `delivered ${String(delivered)} bit/s, expected ${String(expected)}\n  ${latenessReport(lab, ['rc-rs'])}`;
      assert.ok(delivered <= expected * 1.02, detail);
      assert.ok(delivered >= expected * 0.9, detail);
    } finally {
      server.kill();
    }
  });
});
