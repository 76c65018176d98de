/**
 * How accurate is the lab? Builds labs (prefix 'tba'), measures, prints a report;
 * the numbers in docs/lab.md come from this. Needs root. About a minute.
 *
 *   node dist/benchmarks/lab-accuracy.js
 *
 * 1. idle RTT per link and on the composed path (ping, 50 x 20 ms)
 * 2. RTT while the link carries paced TCP traffic (iperf3 -b) at 200 Mbit/s
 * 3. rate-cap accuracy (iperf3 goodput vs cap; goodput = cap * 1448/1500 for full-size TCP segments)
 * 4. the most an uncapped link carries, one link and the three-link path
 * with the emulator's own lateness histogram (packets written after their due time).
 */
import { Lab } from '../src/lab/lab.js';
import { applyLinkFlag, profileFromDelays, type LabProfile } from '../src/lab/link-config.js';
import type { LabNode, LinkName } from '../src/lab/address-plan.js';
import { lateBucketLabels } from '../src/lab/emulator/lateness.js';

const PREFIX = 'tba';

function pingStats(stdout: string): string {
  const times = [...stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
  if (times.length === 0) return 'no replies';
  const q = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))] ?? NaN;
  const avg = times.reduce((a, b) => a + b, 0) / times.length;
  return `n=${times.length} min ${q(0).toFixed(3)} p50 ${q(0.5).toFixed(3)} avg ${avg.toFixed(3)} p99 ${q(0.99).toFixed(3)} max ${q(1).toFixed(3)}`;
}

function histogram(lab: Lab, link: LinkName): string {
  const c = lab.linkCounters(link);
  const h = c.up.lateHistogram.map((v, i) => v + (c.down.lateHistogram[i] ?? 0));
  const total = h.reduce((a, b) => a + b, 0);
  const labels = lateBucketLabels();
  return `late: mean ${((c.up.lateMeanMs * c.up.txPackets + c.down.lateMeanMs * c.down.txPackets) / Math.max(1, total)).toFixed(3)} ms, max ${Math.max(c.up.lateMaxMs, c.down.lateMaxMs).toFixed(3)} ms; ` +
    labels.map((l, i) => `${l} ${(100 * (h[i] ?? 0) / Math.max(1, total)).toFixed(2)}%`).join(', ');
}

async function withLab(profile: LabProfile, body: (lab: Lab) => Promise<void>): Promise<void> {
  const lab = await Lab.create({ prefix: PREFIX, profile });
  try {
    await body(lab);
  } finally {
    await lab.destroy();
  }
}

async function ping(lab: Lab, from: LabNode, to: string, count = 50, interval = '0.02'): Promise<string> {
  await lab.exec(from, 'ping', ['-c', '2', '-q', to]);
  const r = await lab.exec(from, 'ping', ['-c', String(count), '-i', interval, to], { timeoutMs: 60_000 });
  return pingStats(r.stdout);
}

async function iperfServer(lab: Lab): Promise<void> {
  lab.spawn('server', 'iperf3', ['-s'], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    if ((await lab.exec('server', 'sh', ['-c', 'ss -Htln | grep -q ":5201 "'])).code === 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function iperf(lab: Lab, to: string, args: string[] = []): Promise<string> {
  const r = await lab.exec('client', 'iperf3', ['-c', to, '-t', '5', '-O', '1', '-J', ...args], { timeoutMs: 30_000 });
  const j = JSON.parse(r.stdout) as { end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } } };
  return `${((j.end?.sum_received?.bits_per_second ?? NaN) / 1e6).toFixed(1)} Mbit/s goodput, ${j.end?.sum_sent?.retransmits ?? '?'} retransmits`;
}

async function main(): Promise<void> {
  const out = (s: string) => { process.stdout.write(`${s}\n`); };
  const oneWay = { 'client-rc': 5, 'rc-rs': 20, 'rs-server': 4, internet: 30 } as const;
  out('## idle RTT (configured: client-rc 10, rc-rs 40, rs-server 8, internet 60, path 58 ms)');
  await withLab(profileFromDelays(oneWay), async (lab) => {
    out(`client-rc  ${await ping(lab, 'client', lab.address('rc', 'client'))}`);
    out(`rc-rs      ${await ping(lab, 'rc', lab.address('rs', 'rc'))}`);
    out(`rs-server  ${await ping(lab, 'rs', lab.address('server', 'path'))}`);
    out(`internet   ${await ping(lab, 'client', lab.address('server', 'internet'))}`);
    out(`path       ${await ping(lab, 'client', lab.address('server', 'path'))}`);
    out(`rc-rs ${histogram(lab, 'rc-rs')}`);
  });

  out('\n## RTT under paced 200 Mbit/s TCP load (internet link, 10 ms one-way, uncapped)');
  await withLab(profileFromDelays({ internet: 10 }), async (lab) => {
    await iperfServer(lab);
    out(`idle       ${await ping(lab, 'client', lab.address('server', 'internet'))}`);
    const load = iperf(lab, lab.address('server', 'internet'), ['-b', '200M', '-t', '8']);
    await new Promise((r) => setTimeout(r, 1500));
    out(`loaded     ${await ping(lab, 'client', lab.address('server', 'internet'), 100)}`);
    out(`iperf3     ${await load}`);
    out(`internet ${histogram(lab, 'internet')}`);
  });

  out('\n## rate caps (rc-rs; path client->server; 1 ms / 5 ms / 1 ms one-way)');
  for (const rate of ['50mbit', '200mbit']) {
    let profile = profileFromDelays({ 'client-rc': 1, 'rc-rs': 5, 'rs-server': 1 });
    profile = applyLinkFlag(profile, `rc-rs:rate=${rate}`);
    await withLab(profile, async (lab) => {
      await iperfServer(lab);
      out(`cap ${rate}: ${await iperf(lab, lab.address('server', 'path'))}; ${histogram(lab, 'rc-rs')}`);
    });
  }

  out('\n## uncapped maximum (2 ms one-way per link)');
  await withLab(profileFromDelays({ 'client-rc': 2, 'rc-rs': 2, 'rs-server': 2, internet: 2 }), async (lab) => {
    await iperfServer(lab);
    out(`one link (internet): ${await iperf(lab, lab.address('server', 'internet'))}; ${histogram(lab, 'internet')}`);
    out(`three links (path):  ${await iperf(lab, lab.address('server', 'path'))}; ${histogram(lab, 'rc-rs')}`);
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
