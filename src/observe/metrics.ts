/**
 * The relay's metrics on prom-client: counters bumped on connection lifecycle events
 * (never per chunk), and values computed when scraped (collect() callbacks). A worker
 * thread sends its registry as plain data (getMetricsAsJSON); the supervisor sums the
 * workers' data with AggregatorRegistry.aggregate, as prom-client does for cluster
 * workers, and serves one page (src/worker/supervisor.ts).
 */
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, type Aggregator } from 'prom-client';

type Labels = Readonly<Record<string, string>>;

export type { Labels, Aggregator };

const memo = new Map<string, Map<string, Labels>>();

/** The same frozen label object for the same name and value (no allocation per event). */
export function labelsFor(name: string, value: string): Labels {
  let byValue = memo.get(name);
  if (byValue === undefined) memo.set(name, (byValue = new Map<string, Labels>()));
  let labels = byValue.get(value);
  if (labels === undefined) {
    // Bounded: values are listener kinds, directions, peers and error codes, a fixed set.
    labels = Object.freeze({ [name]: value });
    byValue.set(value, labels);
  }
  return labels;
}

/**
 * A registry's values as plain data (prom-client's getMetricsAsJSON), safe to post from a
 * worker thread (structured clone) and to aggregate in the supervisor.
 */
export type MetricsSnapshot = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/** Series that hold what happened (counters, histograms): what a dead worker leaves to the sum. */
export function countedOnly(snapshot: MetricsSnapshot): MetricsSnapshot {
  // prom-client types `type` as an enum; at run time it is the exposition's word.
  return snapshot.filter((m) => (m.type as unknown as string) !== 'gauge');
}

/** prom-client's sum of `snapshots`, each series by its own aggregator (sum unless it says otherwise). */
export function aggregate(snapshots: readonly MetricsSnapshot[]): Registry {
  return AggregatorRegistry.aggregate([...snapshots]);
}

/** The aggregate of `snapshots` as one snapshot again (the supervisor keeps dead workers' counters so, in bounded space). */
export async function sumSnapshots(snapshots: readonly MetricsSnapshot[]): Promise<MetricsSnapshot> {
  return aggregate(snapshots).getMetricsAsJSON();
}

/** Options of a series computed at scrape time. */
export interface ComputedOptions {
  /** The label names `read` uses (prom-client needs them up front). */
  readonly labelNames?: readonly string[];
  /** How the supervisor combines the workers' values of a gauge (default: sum). */
  readonly aggregator?: Aggregator;
}

/**
 * A prom-client Registry behind the small interface the relay's call sites use: a
 * counter or histogram is a function to call on an event, a gauge a function to read.
 */
export class Metrics {
  readonly #registry = new Registry();

  get contentType(): string {
    return this.#registry.contentType;
  }

  /** Every series' values now (collect() run), as plain data. */
  snapshot(): Promise<MetricsSnapshot> {
    return this.#registry.getMetricsAsJSON();
  }

  /** The Prometheus text page of this registry alone (a relay without a supervisor). */
  render(): Promise<string> {
    return this.#registry.metrics();
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): (by?: number, labels?: Labels) => void {
    const c = new Counter({ name, help, labelNames, registers: [this.#registry] });
    return (by = 1, labels) => {
      if (labels === undefined) c.inc(by);
      else c.inc(labels, by);
    };
  }

  /** A histogram without labels: `observe(value)`; buckets are upper bounds, ascending. */
  histogram(name: string, help: string, buckets: readonly number[]): (value: number) => void {
    const h = new Histogram({ name, help, buckets: [...buckets], registers: [this.#registry] });
    return (value) => { h.observe(value); };
  }

  /** A gauge whose value is computed when the metrics are read. */
  gauge(name: string, help: string, read: () => number, aggregator: Aggregator = 'sum'): void {
    new Gauge({ name, help, aggregator, registers: [this.#registry], collect(this: Gauge) { this.set(read()); } });
  }

  /**
   * Labelled values computed when read: a gauge, or a counter kept elsewhere (the pools
   * count their own takes, the relay its bytes). A counter stays a prom-client Counter,
   * typed `counter` on the page: collect() resets it and adds the total read now, so
   * `read` must never go backwards for a label set.
   */
  computed(name: string, help: string, type: 'counter' | 'gauge', read: () => Iterable<readonly [Labels, number]>, options: ComputedOptions = {}): void {
    const labelNames = options.labelNames ?? [];
    const registers = [this.#registry];
    if (type === 'counter') {
      new Counter({
        name, help, labelNames, registers,
        collect(this: Counter) {
          this.reset();
          for (const [labels, v] of read()) this.inc(labels, v);
        },
      });
    } else {
      new Gauge({
        name, help, labelNames, registers, aggregator: options.aggregator ?? 'sum',
        collect(this: Gauge) {
          this.reset();
          for (const [labels, v] of read()) this.set(labels, v);
        },
      });
    }
  }

  /**
   * A series' value as the page would show it (collect() run): summed over the label
   * sets that have every label in `labels`; a histogram's count of observations.
   */
  async value(name: string, labels: Labels = {}): Promise<number> {
    const metric = this.#registry.getSingleMetric(name);
    if (metric === undefined) return 0;
    const got = await metric.get();
    const want = Object.entries(labels);
    let sum = 0;
    for (const v of got.values) {
      const named = v as { metricName?: string };
      if (named.metricName !== undefined && named.metricName !== `${name}_count`) continue;
      const have = v.labels as Record<string, unknown>;
      if (want.every(([k, x]) => have[k] === x)) sum += v.value;
    }
    return sum;
  }
}

/** Seconds: from loopback (sub-ms) to intercontinental handshakes (hundreds of ms) and retransmitted SYNs (1 s, 3 s). */
const LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/** The relay's metrics: one place that names them all. */
export class RelayMetrics {
  readonly registry = new Metrics();
  readonly accepted = this.registry.counter('tcpsplit_connections_accepted_total', 'Connections accepted, by listener kind (forward, accept).', ['listener']);
  readonly closed = this.registry.counter('tcpsplit_connections_closed_total', 'Split connections finished, by outcome (ok, or an error code).', ['outcome']);
  readonly headerRejects = this.registry.counter('tcpsplit_header_rejects_total', 'Relay headers rejected, by error code.', ['code']);
  readonly policyDenied = this.registry.counter('tcpsplit_policy_denied_total', 'Targets refused by the allow/deny policy.');
  readonly nextLeg = this.registry.counter('tcpsplit_next_leg_total', 'Next legs opened, by kind (direct, peer).', ['kind']);
  readonly connectSeconds = this.registry.histogram('tcpsplit_next_leg_connect_seconds',
    'Time from accepting a connection to its next leg being connected.', LATENCY_BUCKETS_S);
  readonly firstByteSeconds = this.registry.histogram('tcpsplit_first_byte_seconds',
    'Time from accepting a connection to the first byte back from its next leg (the relay\'s view of time to first byte).', LATENCY_BUCKETS_S);
  readonly overload = this.registry.counter('tcpsplit_overload_total', 'Connections reset at accept because --max-connections (lowered to fit the open-files limit) were open.');
  readonly pendingEvictions = this.registry.counter('tcpsplit_pending_evictions_total',
    'Peer connections still waiting for their header, reset to make room for a newer one, by reason (source: its source was at --max-pending-per-source; global: all pending slots were taken).',
    ['reason']);
  readonly reloads = this.registry.counter('tcpsplit_config_reloads_total', 'Config reloads (SIGHUP, and changes through the control API), by result (ok, error).', ['result']);

  readonly poolRetries = this.registry.counter('tcpsplit_pool_retries_total',
    'Pooled peer legs found dead on use (reset, or silent before the TARGET frame was acknowledged) and replaced by a fresh leg, by peer.', ['peer']);

  constructor(activeConnections: () => number, pendingHeaders: () => number = () => 0) {
    this.registry.gauge('tcpsplit_connections_active', 'Split connections open now.', activeConnections);
    this.registry.gauge('tcpsplit_pending_headers', 'Peer connections waiting for their header now.', pendingHeaders);
  }

  /**
   * Bytes forwarded each way, read when scraped: what closed connections moved plus what
   * open ones have moved so far, so a long download shows live throughput. `read` must
   * not go backwards: a connection's bytes move from open to closed in one step.
   */
  bytes(read: () => { readonly up: number; readonly down: number }): void {
    this.registry.computed('tcpsplit_bytes_total',
      'Bytes forwarded, by direction (up: toward the server, down: toward the client), open connections\' included as they run.', 'counter', () => {
        const { up, down } = read();
        return [[UP, up], [DOWN, down]];
      }, { labelNames: ['direction'] });
  }

  /** This worker's event-loop lag: the p99 since the last scrape (src/observe/loop-lag.ts, read once per snapshot in worker-main). */
  eventLoopLag(worker: number, p99Seconds: () => number): void {
    const labels = labelsFor('worker', String(worker));
    // One worker per label value: any aggregator would do; max shows the worse should two ever report one index.
    this.registry.computed('tcpsplit_event_loop_lag_seconds', 'A worker thread\'s event-loop delay, p99 over the time since the last scrape, by worker.',
      'gauge', () => [[labels, p99Seconds()]], { labelNames: ['worker'], aggregator: 'max' });
  }

  /**
   * Per-peer pool series, read from the pools when scraped (summed over workers by the
   * supervisor). `read` gives every peer's totals so far, including pools a reload retired.
   */
  pools(read: () => readonly PoolCounts[], idleAccepted: () => number): void {
    const series = (name: string, help: string, type: 'counter' | 'gauge', pick: (c: PoolCounts) => number): void => {
      this.registry.computed(name, help, type, () => read().map((c) => [labelsFor('peer', c.peer), pick(c)] as const), { labelNames: ['peer'] });
    };
    series('tcpsplit_pool_size', 'Ready pooled connections now, by peer.', 'gauge', (c) => c.size);
    series('tcpsplit_pool_takes_total', 'Pooled connections handed to a client, by peer.', 'counter', (c) => c.takes);
    series('tcpsplit_pool_misses_total', 'Peer legs that found no usable pooled connection and were dialled, by peer.', 'counter', (c) => c.misses);
    series('tcpsplit_pool_stale_total', 'Pooled connections that died idle or were found dead on take, by peer.', 'counter', (c) => c.stale);
    series('tcpsplit_pool_expired_total', 'Pooled connections closed unused at --pool-max-idle, by peer.', 'counter', (c) => c.expired);
    series('tcpsplit_pool_refill_failures_total', 'Pooled connections that could not be opened (the pool backs off), by peer.', 'counter', (c) => c.refillFailures);
    this.registry.gauge('tcpsplit_pool_idle_accepted', 'Peers\' authenticated idle (pooled) connections held on --accept now.', idleAccepted);
  }

  /**
   * TCP_INFO of a leg to each peer, sampled at scrape (one per peer and worker: an idle
   * pooled connection, else an open leg); averaged over the workers that have one.
   */
  peerLegs(read: () => readonly { readonly peer: string; readonly rttMs: number; readonly cwnd: number; readonly retransmits: number }[]): void {
    const series = (name: string, help: string, pick: (s: { rttMs: number; cwnd: number; retransmits: number }) => number): void => {
      this.registry.computed(name, help, 'gauge', () => read().map((s) => [labelsFor('peer', s.peer), pick(s)] as const), { labelNames: ['peer'], aggregator: 'average' });
    };
    series('tcpsplit_peer_rtt_seconds', 'Smoothed RTT (TCP_INFO) of a leg to each peer, sampled at scrape.', (s) => s.rttMs / 1000);
    series('tcpsplit_peer_cwnd_segments', 'Congestion window (TCP_INFO) of a leg to each peer, sampled at scrape.', (s) => s.cwnd);
    series('tcpsplit_peer_retransmits', 'Segments retransmitted over the sampled leg\'s life (TCP_INFO tcpi_total_retrans), by peer.', (s) => s.retransmits);
  }
}

const UP = labelsFor('direction', 'up');
const DOWN = labelsFor('direction', 'down');

/** What the pool metrics read per peer (PeerPoolStats has these and more). */
export interface PoolCounts {
  readonly peer: string;
  readonly size: number;
  readonly takes: number;
  readonly misses: number;
  readonly stale: number;
  readonly expired: number;
  readonly refillFailures: number;
}
