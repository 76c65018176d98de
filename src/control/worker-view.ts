/**
 * One worker's share of the relay's view (sent with its metrics snapshot), and how the
 * supervisor sums the shares into one RelayView.
 */
import { CONNECTIONS_IN_VIEW, ERRORS_IN_VIEW, type ConnectionView, type ErrorView, type PeerView, type RelayView, type WorkerView } from './relay-view.js';

/** A peer's pool and leg as one worker sees them. */
export interface WorkerPeerPart {
  readonly name: string;
  readonly size: number;
  readonly takes: number;
  readonly misses: number;
  readonly stale: number;
  readonly refillFailures: number;
  /** TCP_INFO of one of this worker's legs to the peer, if it has one. */
  readonly rttMs?: number;
  readonly cwnd?: number;
}

export interface WorkerViewPart {
  readonly accepted: number;
  readonly open: number;
  readonly closed: number;
  readonly failed: number;
  readonly loopLagMs: number;
  readonly bytes: { readonly up: number; readonly down: number };
  /** This worker's longest-lived connections (at most CONNECTIONS_IN_VIEW). */
  readonly connections: readonly ConnectionView[];
  /** Newest first, at most ERRORS_IN_VIEW. */
  readonly errors: readonly ErrorView[];
  readonly peers: readonly WorkerPeerPart[];
}

/** What the supervisor knows itself: the config's side of the view. */
export type SupervisorPart = Pick<RelayView, 'startedAt' | 'features' | 'logLevel' | 'routes' | 'listeners'> & {
  readonly peers: readonly (Omit<PeerView, 'pool' | 'rttMs' | 'cwnd'> & { readonly pool: Pick<PeerView['pool'], 'enabled' | 'low' | 'high' | 'maxIdleMs'> })[];
  /** Every worker slot: its part if it answered, else undefined (being replaced). */
  readonly workers: readonly { readonly index: number; readonly threadId: number; readonly part: WorkerViewPart | undefined }[];
  /** Totals of workers that died (bytes, closed, failed), so the relay's totals never go back. */
  readonly retired: { readonly closed: number; readonly failed: number; readonly bytes: { readonly up: number; readonly down: number } };
};

export function mergeView(s: SupervisorPart, at: number = Date.now()): RelayView {
  const parts = s.workers.flatMap((w) => (w.part === undefined ? [] : [w.part]));
  const workers: WorkerView[] = s.workers.map((w) => ({
    index: w.index, threadId: w.threadId, alive: w.part !== undefined,
    open: w.part?.open ?? 0, accepted: w.part?.accepted ?? 0, loopLagMs: w.part?.loopLagMs ?? 0,
  }));
  const peers: PeerView[] = s.peers.map((p) => {
    const mine = parts.flatMap((w) => w.peers.filter((x) => x.name === p.name));
    const sum = (pick: (x: WorkerPeerPart) => number): number => mine.reduce((n, x) => n + pick(x), 0);
    const withLeg = mine.find((x) => x.rttMs !== undefined);
    return {
      ...p,
      pool: { ...p.pool, size: sum((x) => x.size), takes: sum((x) => x.takes), misses: sum((x) => x.misses), stale: sum((x) => x.stale), refillFailures: sum((x) => x.refillFailures) },
      rttMs: withLeg?.rttMs, cwnd: withLeg?.cwnd,
    };
  });
  const connections = parts.flatMap((w) => w.connections).sort((a, b) => b.ageMs - a.ageMs).slice(0, CONNECTIONS_IN_VIEW);
  const recentErrors = parts.flatMap((w) => w.errors).sort((a, b) => b.at - a.at).slice(0, ERRORS_IN_VIEW);
  return {
    at, startedAt: s.startedAt, features: s.features, logLevel: s.logLevel, workers, peers, routes: s.routes, listeners: s.listeners,
    open: parts.reduce((n, w) => n + w.open, 0),
    connections,
    bytes: {
      up: s.retired.bytes.up + parts.reduce((n, w) => n + w.bytes.up, 0),
      down: s.retired.bytes.down + parts.reduce((n, w) => n + w.bytes.down, 0),
    },
    closed: s.retired.closed + parts.reduce((n, w) => n + w.closed, 0),
    failed: s.retired.failed + parts.reduce((n, w) => n + w.failed, 0),
    recentErrors,
  };
}
