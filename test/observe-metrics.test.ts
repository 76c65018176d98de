/**
 * The Metrics wrapper over prom-client, and the supervisor's aggregation of worker
 * snapshots (AggregatorRegistry.aggregate): what sums, what a gauge's aggregator does,
 * what a dead worker leaves, and that a computed counter stays a counter.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { aggregate, countedOnly, labelsFor, Metrics, sumSnapshots, type Aggregator } from '../src/observe/metrics.js';

/** A worker's registry with one of each kind, its values set by `n`. */
function worker(n: number, lagAggregator: Aggregator = 'max'): Metrics {
  const m = new Metrics();
  const accepted = m.counter('t_accepted_total', 'accepted', ['listener']);
  accepted(n, labelsFor('listener', 'forward'));
  const seconds = m.histogram('t_seconds', 'latency', [0.01, 0.1, 1]);
  for (let i = 0; i < n; i++) seconds(0.05);
  m.gauge('t_active', 'open now', () => n);
  m.computed('t_lag_seconds', 'lag', 'gauge', () => [[labelsFor('worker', 'x'), n / 1000]], { labelNames: ['worker'], aggregator: lagAggregator });
  m.computed('t_takes_total', 'takes', 'counter', () => [[labelsFor('peer', 'rs'), 10 * n]], { labelNames: ['peer'] });
  return m;
}

test('value(): a counter summed over matching label sets, a histogram\'s count, a computed series read now', async () => {
  const m = worker(3);
  assert.equal(await m.value('t_accepted_total'), 3);
  assert.equal(await m.value('t_accepted_total', { listener: 'forward' }), 3);
  assert.equal(await m.value('t_accepted_total', { listener: 'accept' }), 0);
  assert.equal(await m.value('t_seconds'), 3);
  assert.equal(await m.value('t_active'), 3);
  assert.equal(await m.value('t_takes_total', { peer: 'rs' }), 30);
  assert.equal(await m.value('absent'), 0);
});

test('the page is prom-client\'s: an unlabelled counter shows 0, a computed counter is typed counter, label values escaped', async () => {
  const m = new Metrics();
  m.counter('t_overload_total', 'resets');
  m.computed('t_takes_total', 'takes', 'counter', () => [[labelsFor('peer', 'a"b\\c\nd'), 2]], { labelNames: ['peer'] });
  const page = await m.render();
  assert.match(page, /^t_overload_total 0$/m);
  assert.match(page, /^# TYPE t_takes_total counter$/m);
  assert.ok(page.includes('t_takes_total{peer="a\\"b\\\\c\\nd"} 2'), page);
  assert.match(m.contentType, /^text\/plain; version=0\.0\.4/);
});

test('aggregate: counters and histograms sum over workers; each gauge by its aggregator', async () => {
  const cases: { aggregator: Aggregator; lag: number }[] = [{ aggregator: 'max', lag: 0.005 }, { aggregator: 'sum', lag: 0.007 }, { aggregator: 'first', lag: 0.002 }];
  for (const { aggregator, lag } of cases) {
    const page = await aggregate([await worker(2, aggregator).snapshot(), await worker(5, aggregator).snapshot()]).metrics();
    assert.match(page, /^t_accepted_total\{listener="forward"\} 7$/m);
    assert.match(page, /^t_seconds_bucket\{le="0.01"\} 0$/m);
    assert.match(page, /^t_seconds_bucket\{le="0.1"\} 7$/m);
    assert.match(page, /^t_seconds_count 7$/m);
    assert.match(page, /^t_active 7$/m);
    assert.match(page, /^t_takes_total\{peer="rs"\} 70$/m);
    assert.ok(page.includes(`t_lag_seconds{worker="x"} ${lag}\n`), `${aggregator}: ${page}`);
  }
});

test('a dead worker leaves its counters and histograms, not its gauges, and retired sums add up', async () => {
  const dead = countedOnly(await worker(4).snapshot());
  assert.deepEqual(dead.map((s) => s.name).sort(), ['t_accepted_total', 't_seconds', 't_takes_total']);
  const retired = await sumSnapshots([await sumSnapshots([[], dead]), countedOnly(await worker(1).snapshot())]);
  const page = await aggregate([await worker(2).snapshot(), retired]).metrics();
  assert.match(page, /^t_accepted_total\{listener="forward"\} 7$/m);
  assert.match(page, /^t_seconds_count 7$/m);
  assert.match(page, /^t_active 2$/m, 'only the live worker\'s gauge');
  const structured = structuredClone(retired);
  assert.deepEqual(structured, retired, 'plain data: a worker can post it');
});
