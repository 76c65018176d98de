/**
 * Counters bumped on connection lifecycle events (never per chunk), and gauges read
 * on demand, rendered in the Prometheus text exposition format.
 */

type Labels = Readonly<Record<string, string>>;

interface Series {
  readonly help: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly values: Map<string, number>; // rendered label set -> value
  readonly read?: () => number;
  /** Labelled values computed when read (per-peer pool stats). */
  readonly readLabelled?: () => Iterable<readonly [Labels, number]>;
  readonly histogram?: Histogram;
}

interface Histogram {
  readonly bounds: readonly number[];
  readonly counts: number[]; // per bucket, not cumulative; the last is +Inf
  sum: number;
  count: number;
}

// Label sets are usually constants or memoized (see labelsFor): render each once.
const rendered = new WeakMap<Labels, string>();

function renderLabels(labels: Labels | undefined): string {
  if (labels === undefined) return '';
  const cached = rendered.get(labels);
  if (cached !== undefined) return cached;
  const text = renderLabelsUncached(labels);
  rendered.set(labels, text);
  return text;
}

const memo = new Map<string, Map<string, Labels>>();

/** The same frozen label object for the same name and value, so its rendering is cached. */
export function labelsFor(name: string, value: string): Labels {
  let byValue = memo.get(name);
  if (byValue === undefined) memo.set(name, (byValue = new Map<string, Labels>()));
  let labels = byValue.get(value);
  if (labels === undefined) {
    // Bounded: values are listener kinds, directions and error codes, a fixed set.
    labels = Object.freeze({ [name]: value });
    byValue.set(value, labels);
  }
  return labels;
}

function renderLabelsUncached(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/**
 * A registry's values as plain data, for a worker thread to send to the supervisor
 * (structured clone), which sums the workers' snapshots into one /metrics page.
 */
export interface MetricsSnapshot {
  readonly series: readonly SeriesSnapshot[];
}

export interface SeriesSnapshot {
  readonly name: string;
  readonly help: string;
  readonly type: Series['type'];
  /** Rendered label set -> value; for a gauge, one entry with the value read now. */
  readonly values: readonly (readonly [string, number])[];
  readonly histogram?: { readonly bounds: readonly number[]; readonly counts: readonly number[]; readonly sum: number; readonly count: number };
}

/** One Prometheus text page: the series of `snapshots` summed by name and label set, in first-seen order. */
export function renderSnapshots(snapshots: readonly MetricsSnapshot[]): string {
  const merged = mergeSeries(snapshots);
  const lines: string[] = [];
  for (const [name, s] of merged) {
    lines.push(`# HELP ${name} ${s.help}`, `# TYPE ${name} ${s.type}`);
    if (s.histogram !== undefined) renderHistogram(lines, name, s.histogram);
    else if (s.values.size === 0) lines.push(`${name} 0`);
    else for (const [labels, v] of s.values) lines.push(`${name}${labels} ${v}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The sum of `snapshots` as one snapshot (the supervisor keeps dead workers' counters this way, in bounded space). */
export function mergeSnapshots(snapshots: readonly MetricsSnapshot[]): MetricsSnapshot {
  return {
    series: [...mergeSeries(snapshots)].map(([name, s]) => ({
      name, help: s.help, type: s.type, values: [...s.values],
      ...(s.histogram === undefined ? {} : { histogram: { ...s.histogram, counts: [...s.histogram.counts] } }),
    })),
  };
}

function mergeSeries(snapshots: readonly MetricsSnapshot[]): Map<string, { help: string; type: Series['type']; values: Map<string, number>; histogram?: Histogram }> {
  const merged = new Map<string, { help: string; type: Series['type']; values: Map<string, number>; histogram?: Histogram }>();
  for (const snapshot of snapshots) {
    for (const s of snapshot.series) {
      let m = merged.get(s.name);
      if (m === undefined) {
        m = { help: s.help, type: s.type, values: new Map() };
        if (s.histogram !== undefined) {
          m.histogram = { bounds: s.histogram.bounds, counts: Array<number>(s.histogram.counts.length).fill(0), sum: 0, count: 0 };
        }
        merged.set(s.name, m);
      }
      for (const [labels, v] of s.values) m.values.set(labels, (m.values.get(labels) ?? 0) + v);
      const h = m.histogram;
      if (h !== undefined && s.histogram !== undefined) {
        s.histogram.counts.forEach((c, i) => { h.counts[i] = (h.counts[i] ?? 0) + c; });
        h.sum += s.histogram.sum;
        h.count += s.histogram.count;
      }
    }
  }
  return merged;
}

function renderHistogram(lines: string[], name: string, h: Histogram): void {
  let cumulative = 0;
  h.bounds.forEach((le, i) => {
    cumulative += h.counts[i] ?? 0;
    lines.push(`${name}_bucket{le="${le}"} ${cumulative}`);
  });
  lines.push(`${name}_bucket{le="+Inf"} ${h.count}`, `${name}_sum ${h.sum}`, `${name}_count ${h.count}`);
}

export type { Labels };

export class Metrics {
  readonly #series = new Map<string, Series>();

  /** Every series' values now (gauges read), as plain data. */
  snapshot(): MetricsSnapshot {
    const series: SeriesSnapshot[] = [];
    for (const [name, s] of this.#series) {
      const base = { name, help: s.help, type: s.type };
      if (s.histogram !== undefined) {
        const h = s.histogram;
        series.push({ ...base, values: [], histogram: { bounds: h.bounds, counts: [...h.counts], sum: h.sum, count: h.count } });
      } else if (s.read !== undefined) {
        series.push({ ...base, values: [['', s.read()]] });
      } else if (s.readLabelled !== undefined) {
        series.push({ ...base, values: [...s.readLabelled()].map(([labels, v]) => [renderLabels(labels), v] as const) });
      } else {
        series.push({ ...base, values: [...s.values] });
      }
    }
    return { series };
  }

  counter(name: string, help: string): (by?: number, labels?: Labels) => void {
    const series: Series = { help, type: 'counter', values: new Map() };
    this.#series.set(name, series);
    return (by = 1, labels) => {
      const key = renderLabels(labels);
      series.values.set(key, (series.values.get(key) ?? 0) + by);
    };
  }

  /** A histogram without labels: `observe(value)`; buckets are upper bounds, ascending. */
  histogram(name: string, help: string, bounds: readonly number[]): (value: number) => void {
    const h: Histogram = { bounds, counts: Array<number>(bounds.length + 1).fill(0), sum: 0, count: 0 };
    this.#series.set(name, { help, type: 'histogram', values: new Map(), histogram: h });
    return (value) => {
      let i = 0;
      while (i < bounds.length && value > (bounds[i] ?? Infinity)) i++;
      h.counts[i] = (h.counts[i] ?? 0) + 1;
      h.sum += value;
      h.count++;
    };
  }

  /** A gauge whose value is computed when the metrics are read. */
  gauge(name: string, help: string, read: () => number): void {
    this.#series.set(name, { help, type: 'gauge', values: new Map(), read });
  }

  /**
   * Labelled values computed when read: a gauge, or a counter kept elsewhere (the pools
   * count their own takes); `read` returns the current value per label set.
   */
  computed(name: string, help: string, type: 'counter' | 'gauge', read: () => Iterable<readonly [Labels, number]>): void {
    this.#series.set(name, { help, type, values: new Map(), readLabelled: read });
  }

  value(name: string, labels?: Labels): number {
    const series = this.#series.get(name);
    if (series === undefined) return 0;
    if (series.read !== undefined) return series.read();
    if (series.readLabelled !== undefined) {
      let sum = 0;
      const want = labels === undefined ? undefined : renderLabels(labels);
      for (const [l, v] of series.readLabelled()) if (want === undefined || renderLabels(l) === want) sum += v;
      return sum;
    }
    if (series.histogram !== undefined) return series.histogram.count;
    if (labels === undefined) {
      let sum = 0;
      for (const v of series.values.values()) sum += v;
      return sum;
    }
    return series.values.get(renderLabels(labels)) ?? 0;
  }

  render(): string {
    const lines: string[] = [];
    for (const [name, s] of this.#series) {
      lines.push(`# HELP ${name} ${s.help}`, `# TYPE ${name} ${s.type}`);
      if (s.histogram !== undefined) renderHistogram(lines, name, s.histogram);
      else if (s.read !== undefined) lines.push(`${name} ${s.read()}`);
      else if (s.readLabelled !== undefined) for (const [labels, v] of s.readLabelled()) lines.push(`${name}${renderLabels(labels)} ${v}`);
      else if (s.values.size === 0) lines.push(`${name} 0`);
      else for (const [labels, v] of s.values) lines.push(`${name}${labels} ${v}`);
    }
    return `${lines.join('\n')}\n`;
  }
}

/** Seconds: from loopback (sub-ms) to intercontinental handshakes (hundreds of ms). */
const LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/** The relay's metrics: one place that names them all. */
export class RelayMetrics {
  readonly registry = new Metrics();
  readonly accepted = this.registry.counter('tcpsplit_connections_accepted_total', 'Connections accepted, by listener kind (forward, accept).');
  readonly closed = this.registry.counter('tcpsplit_connections_closed_total', 'Split connections finished, by outcome (ok, or an error code).');
  readonly bytes = this.registry.counter('tcpsplit_bytes_total', 'Bytes forwarded, by direction (up: toward the server, down: toward the client); counted at close.');
  readonly headerRejects = this.registry.counter('tcpsplit_header_rejects_total', 'Relay headers rejected, by error code.');
  readonly policyDenied = this.registry.counter('tcpsplit_policy_denied_total', 'Targets refused by the allow/deny policy.');
  readonly nextLeg = this.registry.counter('tcpsplit_next_leg_total', 'Next legs opened, by kind (direct, peer).');
  readonly connectSeconds = this.registry.histogram('tcpsplit_next_leg_connect_seconds',
    'Time from accepting a connection to its next leg being connected.', LATENCY_BUCKETS_S);
  readonly firstByteSeconds = this.registry.histogram('tcpsplit_first_byte_seconds',
    'Time from accepting a connection to the first byte back from its next leg (the relay\'s view of time to first byte).', LATENCY_BUCKETS_S);
  readonly overload = this.registry.counter('tcpsplit_overload_total', 'Connections reset at accept because --max-connections (lowered to fit the open-files limit) were open.');
  readonly pendingEvictions = this.registry.counter('tcpsplit_pending_evictions_total',
    'Peer connections still waiting for their header, reset to make room for a newer one, by reason (source: its source was at --max-pending-per-source; global: all pending slots were taken).');
  readonly reloads = this.registry.counter('tcpsplit_config_reloads_total', 'Config reloads on SIGHUP, by result (ok, error).');

  readonly poolRetries = this.registry.counter('tcpsplit_pool_retries_total',
    'Pooled peer legs found dead on use (reset, or silent before the TARGET frame was acknowledged) and replaced by a fresh leg, by peer.');

  constructor(activeConnections: () => number, pendingHeaders: () => number = () => 0) {
    this.registry.gauge('tcpsplit_connections_active', 'Split connections open now.', activeConnections);
    this.registry.gauge('tcpsplit_pending_headers', 'Peer connections waiting for their header now.', pendingHeaders);
  }

  /**
   * Per-peer pool series, read from the pools when scraped (summed over workers by the
   * supervisor). `read` gives every peer's totals so far, including pools a reload retired.
   */
  pools(read: () => readonly PoolCounts[], idleAccepted: () => number): void {
    const series = (name: string, help: string, type: 'counter' | 'gauge', pick: (c: PoolCounts) => number): void => {
      this.registry.computed(name, help, type, () => read().map((c) => [labelsFor('peer', c.peer), pick(c)] as const));
    };
    series('tcpsplit_pool_size', 'Ready pooled connections now, by peer.', 'gauge', (c) => c.size);
    series('tcpsplit_pool_takes_total', 'Pooled connections handed to a client, by peer.', 'counter', (c) => c.takes);
    series('tcpsplit_pool_misses_total', 'Peer legs that found no usable pooled connection and were dialled, by peer.', 'counter', (c) => c.misses);
    series('tcpsplit_pool_stale_total', 'Pooled connections that died idle or were found dead on take, by peer.', 'counter', (c) => c.stale);
    series('tcpsplit_pool_expired_total', 'Pooled connections closed unused at --pool-max-idle, by peer.', 'counter', (c) => c.expired);
    series('tcpsplit_pool_refill_failures_total', 'Pooled connections that could not be opened (the pool backs off), by peer.', 'counter', (c) => c.refillFailures);
    this.registry.gauge('tcpsplit_pool_idle_accepted', 'Peers\' authenticated idle (pooled) connections held on --accept now.', idleAccepted);
  }
}

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
