/**
 * The worker's half of early SYN (src/relay/early-leg.ts), without sockets or kernel:
 * which SYN events open a leg, what a claim hands over, and what is counted. The pairing
 * rules themselves are tested in intercept-pairing-table.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { EarlyLegs, type EarlyTarget } from '../src/relay/early-leg.js';
import { Metrics } from '../src/observe/metrics.js';
import { monotonicMs, type SynEvent } from '../src/intercept/syn-capture.js';
import { steer } from '../src/net/steer.js';
import type { SplitConnection } from '../src/relay/split-connection.js';

interface FakeConn { readonly id: number; failed?: Error }

function harness(index: number, workers: number, ours = true) {
  const metrics = new Metrics();
  const opened: FakeConn[] = [];
  const target: EarlyTarget = { kind: 'forward', destination: { target: { host: '198.18.3.2', port: 80 }, requestedByPeer: false } };
  const early = new EarlyLegs({
    index, workers, metrics,
    hooks: {
      targetOf: () => (ours ? target : undefined),
      open: () => {
        const conn: FakeConn = { id: opened.length };
        opened.push(conn);
        // Only fail() is used on a dropped leg.
        return Object.assign(conn, { fail(err: Error) { conn.failed = err; } }) as unknown as SplitConnection;
      },
    },
  });
  return { early, metrics, opened };
}

/** A client port that steer() gives worker `k` of `workers`. */
function portFor(k: number, workers: number, saddr: string): number {
  for (let port = 40000; ; port++) if (steer({ address: saddr, port }, workers) === k) return port;
}

function syn(sport: number, isn = 7): SynEvent {
  return { saddr: '198.18.0.1', sport, daddr: '198.18.1.1', dport: 8080, family: 4, isn, t: monotonicMs(), queueNum: 0 };
}

function accepted(sport: number): Socket {
  return { remoteAddress: '::ffff:198.18.0.1', remotePort: sport } as unknown as Socket;
}

test('early leg: a SYN steered here opens a leg, and its accept claims it once', async () => {
  const { early, metrics, opened } = harness(1, 2);
  const sport = portFor(1, 2, '198.18.0.1');
  early.onSyn(syn(sport));
  early.onSyn(syn(sport)); // a retransmission: no second leg
  assert.equal(opened.length, 1);
  assert.equal(early.size, 1);
  assert.equal(early.claim(accepted(sport), '198.18.1.1', 8080), opened[0] as unknown as SplitConnection);
  assert.equal(early.claim(accepted(sport), '198.18.1.1', 8080), undefined, 'claimed once');
  assert.equal(await metrics.value('tcpsplit_early_syn_captured_total'), 2);
  assert.equal(await metrics.value('tcpsplit_early_syn_paired_total'), 1);
  assert.equal(await metrics.value('tcpsplit_early_syn_fallbacks_total'), 1);
  early.close();
});

test('early leg: a SYN steer() gives another worker is a steering miss: nothing opened, and the accept there falls back', async () => {
  const { early, metrics, opened } = harness(0, 2);
  const sport = portFor(1, 2, '198.18.0.1');
  early.onSyn(syn(sport));
  assert.equal(opened.length, 0);
  assert.equal(await metrics.value('tcpsplit_early_syn_steering_misses_total'), 1);
  assert.equal(early.claim(accepted(sport), '198.18.1.1', 8080), undefined);
  assert.equal(await metrics.value('tcpsplit_early_syn_fallbacks_total'), 1);
  early.close();
});

test('early leg: a SYN for no listener of ours opens nothing; an accept for another destination does not take a leg', () => {
  const notOurs = harness(0, 1, false);
  notOurs.early.onSyn(syn(40000));
  assert.equal(notOurs.opened.length, 0);
  const { early, opened } = harness(0, 1);
  early.onSyn(syn(40001));
  assert.equal(early.claim(accepted(40001), '198.18.1.1', 8081), undefined, 'another port: another 4-tuple');
  assert.equal(opened.length, 1);
  early.close();
  assert.match(String(opened[0]?.failed?.message), /not claimed \(closed\)/);
  assert.equal((opened[0]?.failed as { code?: string } | undefined)?.code, 'TCPSPLIT_ERR_EARLY_LEG_UNCLAIMED');
  assert.equal(early.size, 0);
});

