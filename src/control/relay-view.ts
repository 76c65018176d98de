/**
 * What a running relay shows of itself: one plain-data view, summed over its workers by
 * the supervisor. The control API (`tcpsplit ctl`) and the status page both read it, so
 * a person and a script see the same numbers.
 */

/** One worker thread. */
export interface WorkerView {
  readonly index: number;
  readonly threadId: number;
  /** False while it is being replaced (then the other fields are its last known ones, or 0). */
  readonly alive: boolean;
  /** Split connections open in this worker. */
  readonly open: number;
  /** Connections accepted since this worker started. */
  readonly accepted: number;
  /** Event-loop lag, ms (the p99 over the last sampling window). */
  readonly loopLagMs: number;
}

/** A peer relay, with its pools summed over workers. */
export interface PeerView {
  readonly name: string;
  /** host:port */
  readonly endpoint: string;
  readonly pool: {
    readonly enabled: boolean;
    /** Ready pooled connections now. */
    readonly size: number;
    readonly low: number;
    readonly high: number;
    readonly maxIdleMs: number;
    readonly takes: number;
    readonly misses: number;
    readonly stale: number;
    readonly refillFailures: number;
  };
  /** Smoothed RTT (TCP_INFO) of this relay's legs to the peer, ms; undefined before one exists. */
  readonly rttMs: number | undefined;
  /** Congestion window (segments) of a leg to the peer, from TCP_INFO; undefined before one exists. */
  readonly cwnd: number | undefined;
  /** Turbo-Start on this peer's route: what was applied, or why not. */
  readonly turbo: string;
}

export interface RouteView {
  readonly cidr: string;
  /** A peer's name, or 'direct'. */
  readonly via: string;
}

/** One open split connection. */
export interface ConnectionView {
  readonly id: number;
  readonly worker: number;
  /** forward | accept | intercept */
  readonly kind: string;
  readonly client: string;
  /** host:port, or '-' before a relay header named it. */
  readonly target: string;
  /** A peer's name, 'direct', or '-'. */
  readonly via: string;
  readonly ageMs: number;
  /** Payload bytes so far, toward the server and toward the client. */
  readonly up: number;
  readonly down: number;
}

/** A connection that ended with an error code, most recent first. */
export interface ErrorView {
  /** Unix ms. */
  readonly at: number;
  readonly code: string;
  readonly message: string;
  readonly worker: number;
}

export interface FeatureView {
  readonly earlySyn: boolean;
  readonly pool: boolean;
  readonly turbo: boolean;
}

export interface RelayView {
  /** Unix ms when the view was taken. */
  readonly at: number;
  readonly startedAt: number;
  readonly features: FeatureView;
  readonly logLevel: string;
  readonly workers: readonly WorkerView[];
  readonly peers: readonly PeerView[];
  readonly routes: readonly RouteView[];
  /** Listeners: `-L 127.0.0.1:8080 -> host:port`, `--accept 0.0.0.0:7000`, ... */
  readonly listeners: readonly string[];
  /** Open connections over all workers. */
  readonly open: number;
  /** The longest-lived open connections first, at most CONNECTIONS_IN_VIEW. */
  readonly connections: readonly ConnectionView[];
  /** Payload bytes since start, each way, including what open connections moved so far. */
  readonly bytes: { readonly up: number; readonly down: number };
  /** Connections ended since start, and how many of them with an error code. */
  readonly closed: number;
  readonly failed: number;
  /** At most ERRORS_IN_VIEW, newest first. */
  readonly recentErrors: readonly ErrorView[];
}

/** How many open connections a view lists (the longest-lived). */
export const CONNECTIONS_IN_VIEW = 50;
/** How many recent errors a view keeps. */
export const ERRORS_IN_VIEW = 20;

/** Where the status page and the control API get views. */
export interface ViewSource {
  view(): Promise<RelayView>;
}
