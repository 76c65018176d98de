import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PairingTable, type DropReason, type OfferOutcome, type SynOffer } from '../src/intercept/pairing-table.js';
import type { FourTuple } from '../src/net/four-tuple.js';
import { monotonicMs } from '../src/intercept/clock.js';

interface Leg { readonly id: number; closed?: DropReason }

/** A table on a fake clock with no timer; legs are numbered, drops recorded. */
function harness(options: { timeoutMs?: number; maxEntries?: number; maxPerSource?: number } = {}) {
  let now = 1000;
  let next = 0;
  const dropped: { leg: Leg; reason: DropReason }[] = [];
  const opened: Leg[] = [];
  const table = new PairingTable<Leg>({
    ...options, now: () => now, sweepIntervalMs: 0,
    onDrop: (leg, reason) => { assert.equal(leg.closed, undefined, 'a leg is dropped once'); leg.closed = reason; dropped.push({ leg, reason }); },
  });
  const open = (): Leg => { const leg = { id: next++ }; opened.push(leg); return leg; };
  return {
    table, dropped, opened,
    advance: (ms: number) => { now += ms; },
    now: () => now,
    offer: (syn: Omit<SynOffer, 't'> & { t?: number }): OfferOutcome => table.offer({ ...syn, t: syn.t ?? now }, open),
  };
}

const T: FourTuple = { saddr: '198.18.0.1', sport: 40000, daddr: '198.18.3.2', dport: 80 };

test('pairing: an offered leg is claimed once by its 4-tuple, and a second claim misses', () => {
  const h = harness();
  assert.equal(h.offer({ ...T, isn: 7 }), 'opened');
  assert.equal(h.table.size, 1);
  h.advance(5);
  const c = h.table.claim(T);
  assert.equal(c?.leg.id, 0);
  assert.equal(c.isn, 7);
  assert.equal(c.waitedMs, 5);
  assert.equal(h.table.claim(T), undefined);
  assert.equal(h.table.size, 0);
  assert.deepEqual([h.table.counters.claimed, h.table.counters.missed], [1, 1]);
});

test('pairing: the key is canonical: an IPv4 client seen as ::ffff:a.b.c.d claims the IPv4 SYN, IPv6 text in any form', () => {
  const h = harness();
  h.offer({ ...T, isn: 1 });
  assert.ok(h.table.claim({ ...T, saddr: '::ffff:198.18.0.1', daddr: '::ffff:198.18.3.2' }));
  const v6 = { saddr: 'fd00:0:0::1', sport: 1, daddr: 'FD00::2', dport: 2 };
  h.offer({ ...v6, isn: 1 });
  assert.ok(h.table.claim({ saddr: 'fd00::1', sport: 1, daddr: 'fd00::2', dport: 2 }));
  h.offer({ ...T, isn: 1, sport: 40001 });
  assert.equal(h.table.claim({ ...T, sport: 40002 }), undefined, 'another port is another connection');
});

test('pairing: a retransmitted SYN (same tuple, same ISN) opens no second leg', () => {
  const h = harness();
  assert.equal(h.offer({ ...T, isn: 99 }), 'opened');
  h.advance(1000);
  assert.equal(h.offer({ ...T, isn: 99 }), 'retransmit');
  h.advance(1000);
  assert.equal(h.offer({ ...T, isn: 99 }), 'retransmit');
  assert.equal(h.opened.length, 1);
  assert.equal(h.table.counters.retransmits, 2);
  assert.equal(h.table.claim(T)?.leg.id, 0);
});

test('pairing: a reused 4-tuple (new ISN) drops the old leg as superseded and never hands it out', () => {
  const h = harness();
  h.offer({ ...T, isn: 1 });
  h.advance(100);
  assert.equal(h.offer({ ...T, isn: 2 }), 'opened');
  assert.deepEqual(h.dropped.map((d) => [d.leg.id, d.reason]), [[0, 'superseded']]);
  const c = h.table.claim(T);
  assert.equal(c?.leg.id, 1);
  assert.equal(c.isn, 2);
});

test('pairing: a claim with the accepted socket\'s ISN (TCP_SAVED_SYN) takes only the leg of that SYN', () => {
  const h = harness();
  h.offer({ ...T, isn: 5 });
  assert.equal(h.table.claim(T, 5)?.leg.id, 0, 'same ISN: paired');
  h.advance(10);
  h.offer({ ...T, isn: 6 });
  // The accepted connection came from a later SYN the capture missed (ISN 7): the entry is another attempt's.
  assert.equal(h.table.claim(T, 7), undefined);
  assert.deepEqual(h.dropped.map((d) => [d.leg.id, d.reason]), [[1, 'mismatch']]);
  assert.equal(h.table.counters.isnMismatch, 1);
  assert.equal(h.table.size, 0);
  h.advance(1);
  assert.equal(h.offer({ ...T, isn: 7, t: h.now() - 5 }), 'late', 'the accepted SYN\'s own event, arriving late, opens nothing');
});

test('pairing: an entry expires after the timeout: its leg is closed, and a claim after it misses', () => {
  const h = harness({ timeoutMs: 3000 });
  h.offer({ ...T, isn: 1 });
  h.offer({ ...T, sport: 2, isn: 1 });
  h.advance(2999);
  h.table.sweep();
  assert.equal(h.dropped.length, 0, 'not yet');
  h.advance(1);
  assert.equal(h.table.claim(T), undefined, 'exactly at the timeout it no longer matches');
  assert.deepEqual(h.dropped.map((d) => [d.leg.id, d.reason]), [[0, 'expired']]);
  h.table.sweep();
  assert.deepEqual(h.dropped.map((d) => [d.leg.id, d.reason]), [[0, 'expired'], [1, 'expired']]);
  assert.equal(h.table.size, 0);
  assert.equal(h.table.counters.expired, 2);
});

test('pairing: a retransmission after expiry opens a fresh leg (the old one was closed)', () => {
  const h = harness({ timeoutMs: 1000 });
  h.offer({ ...T, isn: 5 });
  h.advance(1500);
  assert.equal(h.offer({ ...T, isn: 5 }), 'opened');
  assert.deepEqual(h.dropped.map((d) => d.reason), ['expired']);
  assert.equal(h.table.claim(T)?.leg.id, 1);
});

test('pairing: a SYN event that arrives after its accept opens nothing (late), a new connection on the tuple later does', () => {
  const h = harness();
  const synAt = h.now();
  h.advance(1);
  assert.equal(h.table.claim(T), undefined, 'accept ran before the event: fallback');
  assert.equal(h.offer({ ...T, isn: 10, t: synAt }), 'late', 'captured before the claim');
  h.advance(1);
  assert.equal(h.offer({ ...T, isn: 11 }), 'opened', 'captured after the claim, new ISN: a new connection');
  assert.equal(h.table.counters.late, 1);
});

test('pairing: a retransmitted SYN of a claimed connection, reported after the claim, opens nothing', () => {
  const h = harness();
  h.offer({ ...T, isn: 3 });
  h.advance(1);
  assert.ok(h.table.claim(T));
  h.advance(1);
  assert.equal(h.offer({ ...T, isn: 3 }), 'late');
  assert.equal(h.opened.length, 1);
});

test('pairing: the table is capped per worker and per source; beyond, no leg is opened, and counted', () => {
  const h = harness({ maxEntries: 4, maxPerSource: 2 });
  const outcomes = [1, 2, 3].map((port) => h.offer({ ...T, sport: port, isn: 0 }));
  assert.deepEqual(outcomes, ['opened', 'opened', 'source-cap']);
  assert.equal(h.table.pendingFrom('198.18.0.1'), 2);
  assert.equal(h.table.pendingFrom('::ffff:198.18.0.1'), 2);
  assert.equal(h.offer({ ...T, saddr: '198.18.0.7', isn: 0 }), 'opened');
  assert.equal(h.offer({ ...T, saddr: '198.18.0.8', isn: 0 }), 'opened');
  assert.equal(h.offer({ ...T, saddr: '198.18.0.9', isn: 0 }), 'full');
  assert.equal(h.opened.length, 4);
  assert.deepEqual([h.table.counters.full, h.table.counters.sourceCapped], [1, 1]);
  // A claim frees the source's slot.
  assert.ok(h.table.claim({ ...T, sport: 1 }));
  assert.equal(h.offer({ ...T, sport: 3, isn: 0 }), 'opened');
});

test('pairing: a full table makes room by sweeping expired entries first', () => {
  const h = harness({ maxEntries: 2, timeoutMs: 100 });
  h.offer({ ...T, sport: 1, isn: 0 });
  h.offer({ ...T, sport: 2, isn: 0 });
  h.advance(100);
  assert.equal(h.offer({ ...T, sport: 3, isn: 0 }), 'opened');
  assert.equal(h.table.counters.expired, 2);
});

test('pairing: a leg that fails to open is counted and leaves no entry', () => {
  const dropped: unknown[] = [];
  const table = new PairingTable<number>({ onDrop: (l) => dropped.push(l), sweepIntervalMs: 0 });
  assert.equal(table.offer({ ...T, isn: 1, t: 0 }, () => { throw new Error('EMFILE'); }), 'open-failed');
  assert.equal(table.size, 0);
  assert.equal(table.counters.openFailed, 1);
});

test('pairing: close() closes every waiting leg once', () => {
  const h = harness();
  for (let p = 1; p <= 5; p++) h.offer({ ...T, sport: p, isn: 0 });
  h.table.close();
  assert.equal(h.dropped.length, 5);
  assert.ok(h.dropped.every((d) => d.reason === 'closed'));
  assert.equal(h.table.size, 0);
});

test('pairing: the sweep timer closes expired legs on its own, and stops when the table is empty', async () => {
  const closed: number[] = [];
  const table = new PairingTable<number>({ timeoutMs: 40, sweepIntervalMs: 10, onDrop: (l) => closed.push(l) });
  table.offer({ ...T, isn: 1, t: monotonicMs() }, () => 42);
  for (let i = 0; i < 100 && closed.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(closed, [42]);
  assert.equal(table.size, 0);
  table.close();
});

test('pairing: options are validated', () => {
  assert.throws(() => new PairingTable({ onDrop: () => undefined, timeoutMs: 0 }), RangeError);
  assert.throws(() => new PairingTable({ onDrop: () => undefined, maxEntries: 1.5 }), RangeError);
  assert.throws(() => new PairingTable({ onDrop: () => undefined, maxPerSource: -1 }), RangeError);
});

/**
 * Model check: random SYNs (few tuples, few ISNs, retransmissions, reuse), accepts and
 * clock steps; accepts with or without the accepted socket's ISN. Invariants: caps hold at every step; every opened leg ends exactly once
 * (claimed or dropped, after close()); a claim returns only the leg of the latest
 * admitted SYN of its tuple, younger than the timeout; a tuple's SYN never has two legs.
 */
test('pairing: model check of caps, single ownership and freshness (fast-check)', () => {
  const arbOp = fc.oneof(
    fc.record({ kind: fc.constant('syn' as const), tuple: fc.nat(5), src: fc.nat(2), isn: fc.nat(2) }),
    fc.record({ kind: fc.constant('accept' as const), tuple: fc.nat(5), src: fc.nat(2), isn: fc.option(fc.nat(2), { nil: undefined }) }),
    fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 1500 }) }),
    fc.constant({ kind: 'sweep' as const }),
  );
  fc.assert(fc.property(fc.array(arbOp, { maxLength: 80 }), (ops) => {
    const h = harness({ timeoutMs: 3000, maxEntries: 6, maxPerSource: 3 });
    const claimed = new Set<number>();
    /** The leg id and ISN of the latest opened SYN per tuple key, and when it was opened. */
    const latest = new Map<string, { id: number; isn: number; at: number }>();
    const tupleOf = (t: number, s: number): FourTuple => ({ saddr: `198.18.0.${s + 1}`, sport: 1000 + t, daddr: '198.18.3.2', dport: 80 });
    for (const op of ops) {
      if (op.kind === 'tick') h.advance(op.ms);
      else if (op.kind === 'sweep') h.table.sweep();
      else if (op.kind === 'syn') {
        const tuple = tupleOf(op.tuple, op.src);
        const before = h.opened.length;
        const outcome = h.offer({ ...tuple, isn: op.isn });
        assert.equal(h.opened.length - before, outcome === 'opened' ? 1 : 0);
        if (outcome === 'opened') latest.set(JSON.stringify(tuple), { id: before, isn: op.isn, at: h.now() });
      } else {
        const tuple = tupleOf(op.tuple, op.src);
        const c = h.table.claim(tuple, op.isn);
        if (c !== undefined) {
          if (op.isn !== undefined) assert.equal(c.isn, op.isn, 'with an ISN, only the leg of that SYN');
          assert.ok(!claimed.has(c.leg.id), 'a leg is claimed once');
          assert.equal(c.leg.closed, undefined, 'a claimed leg was not closed');
          const l = latest.get(JSON.stringify(tuple));
          assert.equal(c.leg.id, l?.id, 'only the latest SYN of the tuple');
          assert.ok(h.now() - (l?.at ?? 0) < 3000, 'younger than the timeout');
          claimed.add(c.leg.id);
        }
      }
      assert.ok(h.table.size <= 6);
      for (let s = 0; s < 3; s++) assert.ok(h.table.pendingFrom(`198.18.0.${s + 1}`) <= 3);
      const live = h.opened.filter((l) => l.closed === undefined && !claimed.has(l.id)).length;
      assert.equal(live, h.table.size, 'every unclaimed, unclosed leg is in the table');
    }
    h.table.close();
    for (const leg of h.opened) assert.ok(claimed.has(leg.id) !== (leg.closed !== undefined), `leg ${leg.id} ended exactly once`);
  }), { numRuns: 500 });
});
