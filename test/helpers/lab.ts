import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { LAB_NODES, LINK_NAMES } from '../../src/lab/address-plan.js';
import { stateDir } from '../../src/lab/lab-state.js';
import { isRunning, listNamespaces } from '../../src/lab/netns.js';
import { rootDeviceName } from '../../src/lab/topology.js';

/** node:test `skip` value for tests that build namespaces and TUN devices. */
export const needsRoot: string | false = process.getuid?.() === 0 ? false : 'needs root (network namespaces, TUN devices)';

export interface PingStats {
  readonly transmitted: number;
  readonly received: number;
  readonly minMs: number;
  readonly avgMs: number;
  readonly maxMs: number;
  readonly mdevMs: number;
}

/** Parses iputils ping's summary lines. */
export function parsePing(stdout: string): PingStats {
  const counts = /(\d+) packets transmitted, (\d+) received/.exec(stdout);
  const rtt = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(stdout);
  assert.ok(counts, `no ping summary in: ${stdout}`);
  return {
    transmitted: Number(counts[1]), received: Number(counts[2]),
    minMs: Number(rtt?.[1] ?? NaN), avgMs: Number(rtt?.[2] ?? NaN), maxMs: Number(rtt?.[3] ?? NaN), mdevMs: Number(rtt?.[4] ?? NaN),
  };
}

interface IperfJson {
  end?: { sum_sent?: { bits_per_second?: number; retransmits?: number }; sum_received?: { bits_per_second?: number } };
  error?: string;
}

/** Receiver-side goodput and sender retransmits from `iperf3 -J` output. */
export function parseIperf(stdout: string): { receivedBitsPerSec: number; sentBitsPerSec: number; retransmits: number } {
  const j = JSON.parse(stdout) as IperfJson;
  assert.equal(j.error, undefined, `iperf3: ${j.error ?? ''}`);
  return {
    receivedBitsPerSec: j.end?.sum_received?.bits_per_second ?? NaN,
    sentBitsPerSec: j.end?.sum_sent?.bits_per_second ?? NaN,
    retransmits: j.end?.sum_sent?.retransmits ?? NaN,
  };
}

/** Asserts that nothing of lab `prefix` is left: namespaces, root devices, state. */
export function assertNoLabLeft(prefix: string): void {
  const ours = listNamespaces().filter((n) => LAB_NODES.some((node) => n === `${prefix}-${node}`));
  assert.deepEqual(ours, [], 'namespaces left');
  for (const link of LINK_NAMES) {
    for (const end of ['a', 'b'] as const) {
      assert.ok(!existsSync(`/sys/class/net/${rootDeviceName(prefix, link, end)}`), 'root TUN device left');
    }
  }
  assert.ok(!existsSync(stateDir(prefix)), 'state dir left');
}

/** Running (a zombie awaiting its reaper counts as gone). */
export function pidAlive(pid: number): boolean {
  return isRunning(pid);
}

/** |measured - expected| <= max(absMs, rel * expected): the lab's RTT accuracy claim. */
export function assertRttClose(measuredMs: number, expectedMs: number, what: string, absMs = 1, rel = 0.03): void {
  const tol = Math.max(absMs, rel * expectedMs);
  assert.ok(Math.abs(measuredMs - expectedMs) <= tol,
    `${what}: measured ${measuredMs.toFixed(3)} ms, configured ${expectedMs.toFixed(3)} ms (tolerance ${tol.toFixed(3)} ms)`);
}
