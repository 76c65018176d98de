import { createServer, type Server, type Socket, type AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Server as HttpServer } from 'node:http';
import type { Logger } from '../observe/logger.js';
import { RelayMetrics, labelsFor } from '../observe/metrics.js';
import { closeHttpServer, startMetricsServer, serverAddress } from '../observe/metrics-server.js';
import { poolOf, type Endpoint, type RelayConfig } from '../config/relay-config.js';
import { AddressPolicy } from '../net/address-policy.js';
import { describeChanges, diffConfigs, RESTART_ONLY } from '../config/config-diff.js';
import { HeaderAuth } from '../protocol/header-auth.js';
import { ReplayGuard, type ReplayCheck } from '../protocol/replay-guard.js';
import { Router } from './router.js';
import { SplitConnection, clientOf, type ConnectionKind, type ConnectionRecord } from './split-connection.js';
import { DialingLegFactory, openNextLeg, type LegFactory, type NextLeg } from './leg-factory.js';
import { ForwardTargetSource, type Destination } from './target-source.js';
import { DEFAULT_IDLE_BACKSTOP_MS, DEFAULT_MAX_IDLE_PER_PEER, PooledTargetSource } from './pooled-target-source.js';
import { PoolSet } from '../pool/pool-set.js';
import { PooledLegFactory } from '../pool/pooled-leg-factory.js';
import { DEFAULT_POOL_TUNING } from '../pool/pool-options.js';
import { dialOpener, socketFactoryOpener, type PoolOpener } from '../pool/opener.js';
import type { PeerPoolStats } from '../pool/peer-pool.js';
import { DEFAULT_TURBO_TUNING, peerListenerSocketOptions, relayLegSocketOptions, type TurboTuning } from '../turbo/turbo-options.js';
import type { PoolCounts } from '../observe/metrics.js';
import {
  ConfigError, DrainTimeoutError, FdLimitError, FfiUnavailableError, errorCode, IdleClosedError, InsecureAcceptError, OverloadError, PeerResetError,
  PendingEvictedError, RestartRequiredError,
} from '../errors.js';
import { ListenerSet, nodeListenerSource, type ListenerSource, type WantedListener } from './listener-set.js';
import { SharedConnectionSlots, type ConnectionSlots } from './connection-slots.js';
import { prepareSocketCalls, resetSocket } from '../sys/index.js';
import { unmapIpv4 } from '../net/ip-address.js';
import { PendingAdmission, type EvictionReason, type PendingLimits } from './admission.js';
import { FDS_PER_CONNECTION, planFdBudget } from './fd-budget.js';
import { RateLimitedLog } from '../observe/rate-limited-log.js';
import { Interception, requireNetAdmin } from '../intercept/interception.js';
import { InterceptTargetSource, interceptSocketOptions } from '../intercept/intercept-target.js';
import type { MessagePort } from 'node:worker_threads';
import type { SynEvent } from '../intercept/syn-capture.js';
import { Cidr } from '../net/cidr.js';
import { canonicalAddress } from '../net/four-tuple.js';
import { ConnectionLedger } from './connection-ledger.js';
import { samplePeerLegs, type PeerLegSample } from './peer-legs.js';
import { formatEndpoint } from '../config/load-config.js';
import { CONNECTIONS_IN_VIEW } from '../control/relay-view.js';
import type { WorkerPeerPart, WorkerViewPart } from '../control/worker-view.js';
import { EarlyLegs, headerAtConnect, MAX_UNSENT_EARLY_HEADERS, type EarlyTarget, type UnsentHeaders } from './early-leg.js';

/**
 * With --insecure and no key, relays still speak the same framed protocol, signed with
 * this public key: the header format stays one format, and it authenticates nothing.
 */
const INSECURE_KEY = Buffer.from('tcpsplit insecure mode: no authentication at all');

/** Everything derived from one config; a reload swaps it whole, open connections keep theirs. */
interface RelayState {
  readonly config: RelayConfig;
  readonly router: Router;
  readonly policy: AddressPolicy;
  /** Forward listeners' targets, by listener key. */
  readonly forwards: ReadonlyMap<string, ForwardTargetSource>;
  /**
   * The peer listener's target source (a key is required with --accept): v1 headers, and
   * pooled connections' AUTH and TARGET frames (docs/protocol.md section 13).
   */
  readonly headers: PooledTargetSource | undefined;
  /** The intercept listener's target source (--intercept). */
  readonly intercept: InterceptTargetSource | undefined;
  readonly legs: LegFactory;
  /** --intercept's destinations, parsed once: a SYN to one of them has its target at the SYN. */
  readonly interceptRules: readonly { readonly cidr: Cidr; readonly ports: { readonly first: number; readonly last: number } | undefined }[];
  /** This worker's pools, one per peer (--pool on with a --peer); started when the state is taken up. */
  readonly pools: PoolSet | undefined;
}

/** What a state needs from the relay that owns it. */
interface StateHooks {
  readonly onIdle: (socket: Socket) => void;
  readonly onRetry: (peer: string) => void;
  /** The pools of the running state, reused when nothing they depend on changed. */
  readonly previous: RelayState | undefined;
  readonly ffi: boolean;
}

/** Turbo-Start's socket tuning from the config (routes are the supervisor's: src/turbo/route-tuning.ts). */
export function turboTuningOf(config: RelayConfig): TurboTuning {
  return { ...DEFAULT_TURBO_TUNING, initCwnd: config.turboInitCwnd, initRwnd: config.turboInitRwnd };
}

/**
 * The options a pool is made from: a change to any of them means a new pool. The
 * watermarks and idle age are not among them: a pool takes those in place (retune), so
 * its ready connections outlive the change.
 */
function poolKey(config: RelayConfig): string {
  const { pool, peers, turbo, keepaliveMs, connectTimeoutMs, insecure } = config;
  const pooled = peers.map((p) => poolOf(config, p.name).pool);
  return JSON.stringify({ pool, peers, pooled, turbo, keepaliveMs, connectTimeoutMs, insecure, key: config.key?.toString('hex') });
}

/** A peer's watermarks and idle age as the pool takes them. */
function poolTuningOf(config: RelayConfig, peer: string): { lowWatermark: number; highWatermark: number; maxIdleMs: number } {
  const t = poolOf(config, peer);
  return { lowWatermark: t.low, highWatermark: t.high, maxIdleMs: t.maxIdleMs };
}

function deriveState(config: RelayConfig, replay: ReplayCheck, hooks: StateHooks): RelayState {
  const key = config.key ?? (config.insecure ? INSECURE_KEY : undefined);
  const auth = key === undefined ? undefined : new HeaderAuth(key);
  if (config.accept !== undefined && key === undefined) {
    throw new InsecureAcceptError('--accept needs a pre-shared key (--key-file); use --insecure only in a lab');
  }
  // Turbo-Start's buffers go on relay-to-relay legs only (never on direct, Internet-facing ones).
  const turboSocket = config.turbo && hooks.ffi ? relayLegSocketOptions(turboTuningOf(config)) : undefined;
  const dialing = new DialingLegFactory({
    keepaliveMs: config.keepaliveMs, auth, ...(turboSocket === undefined ? {} : { peerSocketOptions: turboSocket }),
  });
  let pools: PoolSet | undefined;
  if (config.peers.some((p) => poolOf(config, p.name).pool) && auth !== undefined) {
    const previous = hooks.previous;
    if (previous?.pools !== undefined && poolKey(previous.config) === poolKey(config)) {
      // The same pools; the reload retunes them once it commits.
      pools = previous.pools;
    } else {
      const opener: PoolOpener = turboSocket === undefined ? dialOpener : socketFactoryOpener(turboSocket);
      pools = new PoolSet(config.peers, {
        ...DEFAULT_POOL_TUNING,
        lowWatermark: config.poolLow, highWatermark: config.poolHigh, maxIdleMs: config.poolMaxIdleMs,
        connectTimeoutMs: config.connectTimeoutMs, keepaliveMs: config.keepaliveMs, auth, opener,
      }, (peer) => poolOf(config, peer));
    }
  }
  return {
    config,
    router: new Router(config),
    policy: new AddressPolicy({ allow: config.allow, deny: config.deny }),
    forwards: new Map(config.forwards.map((f, i) => [forwardKey(f.listen, i), new ForwardTargetSource(f.target)])),
    headers: auth === undefined ? undefined : new PooledTargetSource({
      auth, replay, headerTimeoutMs: config.headerTimeoutMs,
      maxIdlePerPeer: DEFAULT_MAX_IDLE_PER_PEER, idleBackstopMs: DEFAULT_IDLE_BACKSTOP_MS, onIdle: hooks.onIdle,
    }),
    intercept: config.intercept === undefined ? undefined : new InterceptTargetSource(config.intercept.mode),
    legs: pools === undefined || auth === undefined ? dialing : new PooledLegFactory(pools, dialing, auth, hooks.onRetry),
    pools,
    interceptRules: (config.intercept?.rules ?? []).map((r) => ({ cidr: Cidr.parse(r.cidr), ports: r.ports })),
  };
}

/**
 * Listeners are keyed by what they listen on, not by where they forward: a reload that
 * only changes a forward's target keeps the listening socket, so no connection is
 * refused while the config changes. Port 0 (any free port) is distinct per forward.
 */
function forwardKey(e: Endpoint, index: number): string {
  return e.port === 0 ? `forward ${e.host}:0#${index}` : `forward ${e.host}:${e.port}`;
}

function acceptKey(e: Endpoint): string {
  return `accept ${e.host}:${e.port}`;
}

function interceptKey(e: Endpoint): string {
  return `intercept ${e.host}:${e.port}`;
}

export interface RelayOptions {
  readonly logger: Logger;
  /**
   * What a worker thread injects (src/worker/worker-main.ts) so that the relay's workers
   * act as one: the replay guard (and with it the loop cut-off) shared by all workers,
   * the listener fds the supervisor made, and the relay-wide connection count. Unset,
   * the relay is one process on its own, as before.
   */
  readonly replayGuard?: ReplayCheck;
  readonly listenerSource?: ListenerSource;
  /** This worker's index, which its recorded errors carry (0 when the relay runs alone). */
  readonly workerIndex?: number;
  readonly connectionSlots?: ConnectionSlots;
  /**
   * Whether this relay installs (and at its drain removes) the --intercept rules: one
   * table per instance, so with workers only worker 0 does (default true).
   */
  readonly installInterception?: boolean;
  /**
   * A peer proved itself (a verified header or AUTH frame) from `address` on --accept,
   * with Turbo-Start on: the supervisor applies a route toward it, so the receiving
   * relay's sends to that peer (the response direction) start with the large window too.
   * Called once per address.
   */
  readonly onPeerAuthenticated?: (address: string) => void;
}

/** The relay daemon: forward listeners (-L), the peer listener (--accept), metrics. */
export class Relay {
  readonly metrics: RelayMetrics;
  readonly #logger: Logger;
  #state: RelayState;
  readonly #replay: ReplayCheck;
  /** Relay-wide (shared by the workers), or this relay's own when it runs alone. */
  readonly #slots: ConnectionSlots;
  /** Early legs not claimed yet: they hold no connection slot (#takeSlot, #claimEarly). */
  readonly #earlyUnclaimed = new Set<SplitConnection>();
  readonly #listeners: ListenerSet;
  #reloads: Promise<void> = Promise.resolve();
  readonly #connections = new Set<SplitConnection>();
  #metricsServer: HttpServer | undefined;
  #closing = false;
  /** Peer connections still waiting for their header (unauthenticated so far). */
  readonly #pending: PendingAdmission<SplitConnection>;
  /** Split connections the open-files limit leaves room for; caps --max-connections. */
  readonly #fdConnections: number;
  /** Warn lines anyone can trigger without a key (refused, unauthenticated) go through here. */
  readonly #rejectLog: RateLimitedLog;
  /** --intercept's nftables rules (src/intercept); set once the intercept listener is up. */
  #interception: Interception | undefined;
  /** Early SYN (src/relay/early-leg.ts): set once the supervisor hands this worker its SYN events. */
  #early: EarlyLegs | undefined;
  /** Early legs to peers whose header has not gone yet (src/relay/early-leg.ts). */
  readonly #earlyUnsent: UnsentHeaders = { count: 0 };
  readonly #ffi: boolean;
  /** Peers' authenticated idle connections on --accept (no header deadline; closed first at a drain). */
  readonly #idle = new Set<SplitConnection>();
  /** Accepted peer connections by their socket, while they wait for a target (for onIdle). */
  readonly #byDownstream = new WeakMap<Socket, SplitConnection>();
  /** Totals of pool sets that reloads retired, per peer. */
  readonly #retiredPools = new Map<string, PoolCounts>();
  readonly #onPeerAuthenticated: ((address: string) => void) | undefined;
  /** Peer addresses already reported to onPeerAuthenticated (bounded by the peers that hold the key). */
  readonly #peersSeen = new Set<string>();
  /** This worker's index (0 when the relay runs alone): its view part and recorded errors carry it. */
  readonly #workerIndex: number;
  /** Ended connections' totals and recent failures, for the view. */
  readonly #ledger: ConnectionLedger;

  private constructor(config: RelayConfig, options: RelayOptions, fdConnections: number) {
    this.#logger = options.logger;
    this.#listeners = new ListenerSet(options.logger, options.listenerSource ?? nodeListenerSource(config.backlog));
    this.#replay = options.replayGuard ?? new ReplayGuard({ maxClockSkewMs: config.maxClockSkewMs });
    this.#slots = options.connectionSlots ?? new SharedConnectionSlots(1, 0);
    this.#onPeerAuthenticated = options.onPeerAuthenticated;
    this.#workerIndex = options.workerIndex ?? 0;
    this.#ledger = new ConnectionLedger(this.#workerIndex);
    this.#ffi = prepareSocketCalls();
    this.#state = deriveState(config, this.#replay, this.#hooks(undefined));
    this.#fdConnections = fdConnections;
    this.#rejectLog = new RateLimitedLog(options.logger);
    this.#pending = new PendingAdmission(this.#onEvict);
    this.metrics = new RelayMetrics(() => this.#connections.size - this.#idle.size, () => this.#pending.size);
    this.metrics.pools(() => this.#poolCounts(), () => this.#idle.size);
    this.metrics.peerLegs(() => this.#peerLegs());
    this.metrics.bytes(() => this.#bytesSoFar());
  }

  /** Bytes each way so far: closed connections' and, read now, the open ones' progress. */
  #bytesSoFar(): { up: number; down: number } {
    let { up, down } = this.#ledger.closedBytes;
    for (const conn of this.#connections) {
      const p = conn.progress;
      up += p.up;
      down += p.down;
    }
    return { up, down };
  }

  #hooks(previous: RelayState | undefined): StateHooks {
    return { onIdle: this.#onIdle, onRetry: this.#onRetry, previous, ffi: this.#ffi };
  }

  /** Each peer's pool counts: the running pools plus those a reload retired (counters never go back). */
  #poolCounts(): PoolCounts[] {
    const live = this.#state.pools?.stats() ?? [];
    const byPeer = new Map<string, PoolCounts>();
    for (const c of [...this.#retiredPools.values(), ...live]) {
      const seen = byPeer.get(c.peer);
      byPeer.set(c.peer, seen === undefined ? { ...c } : {
        peer: c.peer, size: seen.size + c.size, takes: seen.takes + c.takes, misses: seen.misses + c.misses,
        stale: seen.stale + c.stale, expired: seen.expired + c.expired, refillFailures: seen.refillFailures + c.refillFailures,
      });
    }
    return [...byPeer.values()];
  }

  /** Pool stats per peer in this worker now (tests, status). */
  poolStats(): PeerPoolStats[] {
    return this.#state.pools?.stats() ?? [];
  }

  /**
   * This worker's share of the relay's view (src/control/worker-view.ts), read when asked:
   * the longest-lived connections with their bytes so far, the recent errors, and per
   * peer the pool and one leg's TCP_INFO.
   */
  async viewPart(loopLagMs: number): Promise<WorkerViewPart> {
    // First: the rest of the part is read in one step after it.
    const accepted = await this.metrics.registry.value('tcpsplit_connections_accepted_total');
    const now = performance.now();
    const open = [...this.#connections].filter((c) => !this.#idle.has(c) && !this.#earlyUnclaimed.has(c));
    const connections = open.sort((a, b) => a.startedAt - b.startedAt).slice(0, CONNECTIONS_IN_VIEW).map((c) => ({
      id: c.id, worker: this.#workerIndex, kind: c.kind, client: c.client, target: c.target === undefined ? '-' : formatEndpoint(c.target), via: c.via,
      ageMs: Math.round(now - c.startedAt), ...c.progress,
    }));
    const pools = new Map(this.#poolCounts().map((c) => [c.peer, c]));
    const legs = new Map(this.#peerLegs().map((l) => [l.peer, l]));
    const peers: WorkerPeerPart[] = this.#state.config.peers.map((peer) => {
      const c = pools.get(peer.name);
      const leg = legs.get(peer.name);
      return {
        name: peer.name, size: c?.size ?? 0, takes: c?.takes ?? 0, misses: c?.misses ?? 0, stale: c?.stale ?? 0, refillFailures: c?.refillFailures ?? 0,
        ...(leg === undefined ? {} : { rttMs: leg.rttMs, cwnd: leg.cwnd }),
      };
    });
    return {
      accepted,
      open: this.activeConnections, closed: this.#ledger.closed, failed: this.#ledger.failed, loopLagMs,
      bytes: this.#bytesSoFar(),
      connections, errors: this.#ledger.recentErrors(), peers,
    };
  }

  /**
   * TCP_INFO of one leg to each peer, read now: an idle pooled connection (the one the
   * next client would get), else an open connection's leg. Peers with neither have none.
   */
  #peerLegs(): PeerLegSample[] {
    return samplePeerLegs(this.#state.config.peers.map((p) => p.name), (peer) => {
      const idle = this.#state.pools?.get(peer)?.idleSocket();
      if (idle !== undefined) return idle;
      for (const c of this.#connections) if (c.via === peer && c.upstream !== undefined) return c.upstream;
      return undefined;
    });
  }

  /** Authenticated idle (pooled) connections held on --accept now. */
  get idleAccepted(): number {
    return this.#idle.size;
  }

  /** Closes a pool set that a reload or the drain retired, keeping its counts. */
  #retirePools(pools: PoolSet | undefined): void {
    if (pools === undefined) return;
    for (const c of pools.stats()) {
      const seen = this.#retiredPools.get(c.peer);
      this.#retiredPools.set(c.peer, {
        peer: c.peer, size: 0, takes: (seen?.takes ?? 0) + c.takes, misses: (seen?.misses ?? 0) + c.misses,
        stale: (seen?.stale ?? 0) + c.stale, expired: (seen?.expired ?? 0) + c.expired,
        refillFailures: (seen?.refillFailures ?? 0) + c.refillFailures,
      });
    }
    pools.close();
  }

  /** An accepted peer connection's AUTH frame verified: it is idle, authenticated, no longer pending. */
  readonly #onIdle = (socket: Socket): void => {
    this.#peerAuthenticated(socket);
    const conn = this.#byDownstream.get(socket);
    if (conn === undefined) return;
    this.#pending.release(conn);
    // The pairing backstop counts from accept; an idle pooled connection waits as long as its sender keeps it.
    conn.waitForUpstream();
    this.#idle.add(conn);
  };

  #peerAuthenticated(socket: Socket): void {
    const address = socket.remoteAddress;
    if (this.#onPeerAuthenticated === undefined || address === undefined || !this.#state.config.turbo) return;
    const plain = unmapIpv4(address);
    if (this.#peersSeen.has(plain)) return;
    this.#peersSeen.add(plain);
    this.#onPeerAuthenticated(plain);
  }

  readonly #onRetry = (peer: string): void => { this.metrics.poolRetries(1, labelsFor('peer', peer)); };

  static async start(config: RelayConfig, options: RelayOptions): Promise<Relay> {
    // Relay's constructor asks again (cached): this one logs.
    if (!prepareSocketCalls()) {
      options.logger.warn({ event: 'ffi', code: FfiUnavailableError.code },
        'socket options through koffi are unavailable: a reset right behind data may pass as a clean end, and a killed relay closes legs with FIN');
    }
    if (config.intercept !== undefined) requireNetAdmin();
    // Before listening: once a listener is open, connections arrive.
    const listeners = config.forwards.length + (config.accept === undefined ? 0 : 1) + (config.metrics === undefined ? 0 : 1)
      + (config.intercept === undefined ? 0 : 1);
    const fd = planFdBudget(listeners);
    if (fd.maxConnections < 1) {
      throw new FdLimitError(`the open-files limit (${fd.soft}, hard ${fd.hard}) leaves no room for a connection: ${fd.baseline} descriptors are taken; raise it (ulimit -n, LimitNOFILE=)`);
    }
    if (fd.soft > fd.softBefore) {
      options.logger.info({ event: 'fd-limit', from: fd.softBefore, to: fd.soft }, 'raised the open-files soft limit to the hard limit');
    }
    if (config.maxConnections > fd.maxConnections) {
      options.logger.warn({
        event: 'fd-limit', code: FdLimitError.code, requested: config.maxConnections, maxConnections: fd.maxConnections,
        openFilesLimit: fd.soft, hardLimit: fd.hard,
      }, `--max-connections ${config.maxConnections} lowered to ${fd.maxConnections}: the open-files limit is ${fd.soft} (hard ${fd.hard}), `
        + `${fd.baseline} are taken and each split connection needs ${FDS_PER_CONNECTION}; raise the limit (ulimit -n, LimitNOFILE=) to allow more`);
    }
    const relay = new Relay(config, options, fd.maxConnections);
    try {
      await relay.#listeners.sync(relay.#wantedListeners(relay.#state));
      relay.#state.pools?.start();
      if (config.metrics !== undefined) {
        relay.#metricsServer = await startMetricsServer(relay.metrics.registry, config.metrics.host, config.metrics.port);
      }
      // Last: the rules divert traffic to a listener that must already be there.
      const intercept = config.intercept;
      const at = intercept === undefined ? undefined : relay.#listeners.address(interceptKey(intercept.listen));
      if (intercept !== undefined && at !== undefined && options.installInterception !== false) {
        relay.#interception = await Interception.install(intercept, at.port, options.logger);
      }
    } catch (err) {
      // Nothing was accepted yet: close quietly (no drain to report).
      relay.#closing = true;
      relay.#listeners.closeAll();
      relay.#state.pools?.close();
      await relay.#closeMetrics();
      throw err;
    }
    return relay;
  }

  /** Split connections open now; peers' idle pooled connections (no client yet) are not counted (see idleAccepted). */
  get activeConnections(): number {
    return this.#connections.size - this.#idle.size;
  }

  /** Bound addresses, by listener: `forward` in config order, then `accept`. */
  addresses(): { forward: AddressInfo[]; accept: AddressInfo | undefined; intercept: AddressInfo | undefined; metrics: AddressInfo | undefined } {
    const { config } = this.#state;
    return {
      forward: config.forwards.flatMap((f, i) => this.#listeners.address(forwardKey(f.listen, i)) ?? []),
      accept: config.accept === undefined ? undefined : this.#listeners.address(acceptKey(config.accept)),
      intercept: config.intercept === undefined ? undefined : this.#listeners.address(interceptKey(config.intercept.listen)),
      metrics: this.#metricsServer === undefined ? undefined : serverAddress(this.#metricsServer),
    };
  }

  /**
   * Early SYN: SYN events for this worker arrive on `port` (the supervisor owns the
   * capture, src/worker/supervisor.ts). From then on a SYN to a -L or --intercept
   * listener opens the next leg at once, and accept() claims it.
   */
  attachSynEvents(port: MessagePort, steering: { readonly index: number; readonly workers: number }): void {
    this.#early ??= new EarlyLegs({
      index: steering.index, workers: steering.workers, metrics: this.metrics.registry,
      hooks: { targetOf: this.#earlyTarget, open: this.#openEarly },
    });
    this.#early.listen(port);
  }

  /** Early legs waiting for their accept (0 without early SYN). */
  get earlyPending(): number {
    return this.#early?.size ?? 0;
  }

  /**
   * Applies a new config without dropping open connections: new connections use the new
   * routes, peers, policy, key and timeouts; listeners that went away close, new ones open
   * (bound before anything closes); the log level and the metrics listener change too. A
   * change to a restart-only option (RESTART_ONLY) refuses the whole reload with
   * RestartRequiredError. On any error nothing changes. Reloads run one at a time, in the
   * order asked; while draining they are ignored.
   */
  reload(config: RelayConfig): Promise<void> {
    const run = this.#reloads.then(() => this.#reload(config));
    this.#reloads = run.catch(() => undefined);
    return run;
  }

  async #reload(config: RelayConfig): Promise<void> {
    if (this.#closing) {
      this.#logger.warn({ event: 'reload' }, 'reload ignored: the relay is draining');
      return;
    }
    const changes = diffConfigs(this.#state.config, config);
    let metricsServer = this.#metricsServer;
    try {
      const restart = changes.filter((c) => RESTART_ONLY.includes(c.option));
      if (restart.length > 0) {
        throw new RestartRequiredError(`--${restart.map((c) => `${c.option} ${c.change}`).join(', --')}: takes effect only at a restart; `
          + 'nothing was reloaded (restart the relay, or put it back to reload the rest)');
      }
      const next = deriveState(config, this.#replay, this.#hooks(this.#state));
      // Like the listeners: the new metrics listener is bound before the old one closes.
      const metricsMoved = changes.some((c) => c.option === 'metrics');
      if (metricsMoved && config.metrics !== undefined) {
        metricsServer = await startMetricsServer(this.metrics.registry, config.metrics.host, config.metrics.port);
      }
      try {
        await this.#listeners.sync(this.#wantedListeners(next));
      } catch (err) {
        if (metricsServer !== this.#metricsServer) await closeHttpServer(metricsServer);
        if (next.pools !== this.#state.pools) next.pools?.close();
        throw err;
      }
      if (metricsMoved) {
        await closeHttpServer(this.#metricsServer);
        this.#metricsServer = config.metrics === undefined ? undefined : metricsServer;
      }
      this.#logger.level = config.logLevel;
      const before = this.#state.pools;
      this.#state = next;
      // A reload may have re-applied Turbo-Start's routes: report peers afresh.
      this.#peersSeen.clear();
      // A new pool set (the pool switched on, or its options or peers changed) starts
      // now; the old one's idle connections close (its taken ones are the connections').
      if (next.pools !== before) {
        this.#retirePools(before);
        next.pools?.start();
      } else {
        // The same pools: new watermarks and idle age in place, their ready connections kept.
        next.pools?.retune((peer) => poolTuningOf(config, peer));
      }
    } catch (err) {
      this.metrics.reloads(1, labelsFor('result', 'error'));
      throw err;
    }
    this.metrics.reloads(1, labelsFor('result', 'ok'));
    const metrics = this.#metricsServer === undefined ? undefined : serverAddress(this.#metricsServer);
    this.#logger.info({ event: 'reload', changed: changes.map((c) => c.option), listeners: this.#listeners.keys(), metrics },
      `config reloaded: ${describeChanges(changes)}`);
  }

  /** Counts a reload that failed before it reached the relay (the file did not load). */
  reloadFailed(): void {
    this.metrics.reloads(1, labelsFor('result', 'error'));
  }

  /** Resets every open connection now: the last thing a dying process does (see relay-command). */
  abortAll(reason: Error): void {
    this.#state.pools?.close();
    for (const conn of this.#connections) conn.fail(reason);
    this.#interception?.removeSync();
  }

  /** Stops accepting, lets open connections finish for up to `drainTimeoutMs`, then resets the rest. */
  async drain(drainTimeoutMs = this.#state.config.drainTimeoutMs): Promise<void> {
    this.#closing = true;
    this.#early?.close();
    // Before the listener closes: a new connection then passes untouched instead of
    // being diverted to a closed port and reset.
    await this.#interceptionStep('stop diverting new connections', (i) => i.stopNew());
    this.#listeners.closeAll();
    // Nothing will be taken from the pools now; peers' idle pooled connections carry no
    // client, so they close at once (their sender's pool sees it and redials elsewhere or later).
    this.#retirePools(this.#state.pools);
    for (const conn of [...this.#idle]) conn.fail(new IdleClosedError('the relay is draining: idle pooled connection closed'));
    this.#logger.info({ event: 'drain', open: this.#connections.size, drainTimeoutMs }, 'listeners closed; draining open connections');
    this.#logger.flush();
    if (this.#connections.size > 0) {
      const deadline = Date.now() + drainTimeoutMs;
      while (this.#connections.size > 0 && Date.now() < deadline) {
        await sleep(Math.min(100, Math.max(1, deadline - Date.now())));
      }
      for (const conn of this.#connections) {
        conn.fail(new DrainTimeoutError(`still open after the ${drainTimeoutMs} ms drain timeout`));
      }
      // Resets close within the event-loop turn; the bound only keeps a bug from hanging
      // the shutdown. Whatever is still open is recorded as it is (each with its own line
      // naming the legs that never closed), so the drain always ends with no connection.
      const resetDeadline = Date.now() + 2000;
      while (this.#connections.size > 0 && Date.now() < resetDeadline) await sleep(5);
      if (this.#connections.size > 0) {
        this.#logger.error({ event: 'drain', open: this.#connections.size }, 'connections still open 2 s after being reset; recording them as they are');
        for (const conn of [...this.#connections]) conn.abandon();
      }
    }
    await this.#interceptionStep('remove the interception rules', (i) => i.remove());
    await this.#closeMetrics();
  }

  /** A failure here must not stop the drain; the next start removes what is left. */
  async #interceptionStep(what: string, step: (i: Interception) => Promise<void>): Promise<void> {
    if (this.#interception === undefined) return;
    try {
      await step(this.#interception);
    } catch (err) {
      this.#logger.error({ event: 'intercept', code: errorCode(err), err }, `could not ${what}; the next start of this instance removes them`);
    }
  }

  /** Closes everything now: open connections are reset. */
  async close(): Promise<void> {
    await this.drain(0);
  }

  async #closeMetrics(): Promise<void> {
    const server = this.#metricsServer;
    this.#metricsServer = undefined;
    await closeHttpServer(server);
  }

  #wantedListeners(state: RelayState): Map<string, WantedListener> {
    const wanted = new Map<string, WantedListener>();
    state.config.forwards.forEach((f, i) => {
      const key = forwardKey(f.listen, i);
      wanted.set(key, { endpoint: f.listen, make: () => this.#forwardServer(key) });
    });
    const { accept } = state.config;
    if (accept !== undefined) {
      // The receiving relay's buffers are part of Turbo-Start: accepted legs inherit the listener's.
      const buffers = state.config.turbo && this.#ffi ? peerListenerSocketOptions(turboTuningOf(state.config)) : {};
      wanted.set(acceptKey(accept), {
        endpoint: accept, make: () => this.#acceptServer(), ...(Object.keys(buffers).length === 0 ? {} : { socketOptions: buffers }),
      });
    }
    const { intercept } = state.config;
    if (intercept !== undefined) {
      wanted.set(interceptKey(intercept.listen), {
        endpoint: intercept.listen, make: () => this.#interceptServer(), socketOptions: interceptSocketOptions(intercept),
      });
    }
    return wanted;
  }

  /** --max-connections, lowered to what the open-files limit allows. */
  #connectionLimit(config: RelayConfig): number {
    return Math.min(config.maxConnections, this.#fdConnections);
  }

  #pendingLimits(config: RelayConfig): PendingLimits {
    // Unauthenticated connections get a quarter of the connection limit: a flood of them
    // cannot starve forwards and verified peers.
    const share = this.#slots.pendingShare;
    return {
      maxPending: Math.max(1, Math.floor((this.#connectionLimit(config) / 4) * share)),
      maxPendingPerSource: Math.max(1, Math.ceil(config.maxPendingPerSource * share)),
    };
  }

  #newConnection(kind: ConnectionKind, socket: Socket, state: RelayState, target: Endpoint | undefined): SplitConnection | undefined {
    const { config } = state;
    const limit = this.#connectionLimit(config);
    if (!this.#takeSlot(limit)) {
      // A reset (SO_LINGER 0), never a clean FIN: a refused client must not mistake
      // this for an empty, complete response.
      socket.on('error', noop);
      const client = clientOf(socket);
      resetSocket(socket);
      if (!this.#closing) this.#countOverload(kind, client, limit);
      return undefined;
    }
    const timeouts = {
      connectTimeoutMs: config.connectTimeoutMs,
      idleTimeoutMs: config.idleTimeoutMs,
      // A backstop only: the header and connect timeouts bound the wait for the next leg.
      pairTimeoutMs: (kind === 'accept' ? config.headerTimeoutMs : 0) + 2 * config.connectTimeoutMs + PAIR_MARGIN_MS,
    };
    const conn = SplitConnection.accepted(socket, {
      id: this.#slots.nextId(), kind, timeouts, onClose: this.#onConnectionClosed, ...(target === undefined ? {} : { target }),
    });
    this.#connections.add(conn);
    this.metrics.accepted(1, labelsFor('listener', kind));
    // At debug, a line when a connection starts too (the record comes at close).
    if (this.#logger.isLevelEnabled('debug')) this.#logger.debug({ event: 'accept', id: conn.id, kind, client: conn.client }, 'connection accepted');
    return conn;
  }

  /**
   * A connection slot (--max-connections, across workers), for an accepted connection.
   * Early legs hold none until their accept claims them: a leg opened for a SYN must
   * never cost a slot to a client whose handshake completed (its own, whose accept may
   * still be queued, or another's, accepted by another worker). The rules, relay-wide
   * and within the open-files budget, are in src/relay/connection-slots.ts.
   */
  #takeSlot(limit: number): boolean {
    return !this.#closing && this.#slots.tryTake(limit);
  }

  /** A client refused for want of a slot: counted, and logged (rate-limited). */
  #countOverload(kind: ConnectionKind, client: string, limit: number): void {
    this.metrics.overload(1);
    this.#rejectLog.warn(OverloadError.code, { event: 'overload', code: OverloadError.code, kind, client, open: this.#connections.size },
      `connection refused: ${limit} connections are open (--max-connections or the open-files limit)`);
  }

  readonly #onConnectionClosed = (conn: SplitConnection, record: ConnectionRecord): void => {
    this.#connections.delete(conn);
    this.#idle.delete(conn);
    if (this.#earlyUnclaimed.delete(conn)) this.#slots.releaseEarly();
    else this.#slots.release();
    this.metrics.closed(1, labelsFor('outcome', record.outcome));
    // In the same step as the delete above: the bytes move from open to closed, never counted twice.
    this.#ledger.record(record, conn.downstream !== undefined);
    if (record.connectMs !== undefined) this.metrics.connectSeconds(record.connectMs / 1000);
    if (record.ttfbMs !== undefined) this.metrics.firstByteSeconds(record.ttfbMs / 1000);
    if (record.outcome === 'ok') this.#logger.info(record, 'connection closed');
    // An early leg no accept claimed (a SYN flood, a client that gave up): anyone can cause these.
    else if (conn.downstream === undefined) this.#logger.debug(record, 'early leg closed unclaimed');
    // A pooled connection its sender retired unused: routine, not a failure worth a warning.
    else if (record.outcome === IdleClosedError.code) this.#logger.info(record, 'idle pooled connection closed');
    // A peer connection whose header never verified (target unset): anyone can cause these.
    else if (conn.kind === 'accept' && conn.target === undefined) this.#rejectLog.warn(record.outcome, record, 'connection failed');
    else this.#logger.warn(record, 'connection failed');
  };

  readonly #onEvict = (conn: SplitConnection, reason: EvictionReason): void => {
    this.metrics.pendingEvictions(1, labelsFor('reason', reason));
    conn.fail(new PendingEvictedError(reason === 'source'
      ? `evicted while waiting for its header: its source had --max-pending-per-source connections waiting`
      : `evicted while waiting for its header: all pending slots (a quarter of the connection limit) were taken`));
  };

  #forwardServer(key: string): Server {
    return createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      if (this.#claimEarly(socket, socket.localAddress, socket.localPort)) return;
      const state = this.#state;
      const destination = state.forwards.get(key)?.targetOf();
      const conn = this.#newConnection('forward', socket, state, destination?.target);
      if (conn === undefined) return;
      if (destination === undefined) {
        conn.fail(new ConfigError('this listener was removed from the config'));
        return;
      }
      this.#openNextLeg(conn, state, destination);
    });
  }

  /**
   * Connections diverted by --intercept: the target is where the client was going
   * (src/intercept/intercept-target.ts), routed like any other target. The address
   * policy applies as for a peer's target: the built-in denials keep a diverted flow
   * from reaching this host's own services.
   */
  #interceptServer(): Server {
    return createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      const state = this.#state;
      let destination: Destination | undefined;
      let error: Error | undefined;
      try {
        destination = state.intercept?.targetOf(socket);
      } catch (err) {
        error = asError(err);
      }
      if (destination !== undefined && this.#claimEarly(socket, destination.target.host, destination.target.port)) return;
      const conn = this.#newConnection('intercept', socket, state, destination?.target);
      if (conn === undefined) return;
      if (destination === undefined) {
        conn.fail(error ?? new ConfigError('--intercept was removed from the config'));
        return;
      }
      this.#openNextLeg(conn, state, destination);
    });
  }

  #acceptServer(): Server {
    return createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      const state = this.#state;
      const conn = this.#newConnection('accept', socket, state, undefined);
      if (conn === undefined) return;
      // Pending until its header verifies (src/relay/admission.ts); may evict older ones.
      this.#pending.admit(conn, socket.remoteAddress, this.#pendingLimits(state.config));
      this.#byDownstream.set(socket, conn);
      socket.once('close', () => { this.#pending.release(conn); });
      const { headers } = state;
      if (headers === undefined) return; // deriveState guarantees a key with --accept
      if (state.config.keepaliveMs > 0) socket.setKeepAlive(true, state.config.keepaliveMs);
      headers.targetOf(socket).then((destination) => {
        this.#pending.release(conn);
        this.#idle.delete(conn);
        this.#byDownstream.delete(socket);
        this.#peerAuthenticated(socket);
        conn.setTarget(destination.target);
        this.#openNextLeg(conn, state, destination);
      }, (err: unknown) => {
        this.#pending.release(conn);
        this.#idle.delete(conn);
        this.#byDownstream.delete(socket);
        const error = asError(err);
        if (!(error instanceof PeerResetError) && !(error instanceof IdleClosedError)) this.metrics.headerRejects(1, labelsFor('code', errorCode(error)));
        conn.fail(error);
      });
    });
  }

  #openNextLeg(conn: SplitConnection, state: RelayState, destination: Destination): void {
    openNextLeg(conn, destination, {
      router: state.router, legs: state.legs, policy: state.policy, connectTimeoutMs: state.config.connectTimeoutMs,
      onDenied: this.#onPolicyDenied, onOpened: this.#onLegOpened,
    });
  }

  /** Accept's half of early SYN: the connection opened at this socket's SYN takes it, if there is one. */
  #claimEarly(socket: Socket, daddr: string | undefined, dport: number | undefined): boolean {
    const early = this.#early;
    if (early === undefined || this.#closing || daddr === undefined || dport === undefined) return false;
    const conn = early.claim(socket, daddr, dport);
    if (conn === undefined) return false;
    if (!this.#earlyUnclaimed.has(conn)) {
      // Its leg failed before this accept (refused, unreachable, denied): the connection
      // is recorded and its early reservation given back already. The client is reset
      // with that failure's code, and takes no slot (it would never be released).
      conn.attachDownstream(socket);
      return true;
    }
    const limit = this.#connectionLimit(this.#state.config);
    if (this.#slots.tryClaimEarly(limit)) {
      this.#earlyUnclaimed.delete(conn);
      this.metrics.accepted(1, labelsFor('listener', conn.kind));
      // The same debug line as an accept without early SYN (#newConnection).
      if (this.#logger.isLevelEnabled('debug')) this.#logger.debug({ event: 'accept', id: conn.id, kind: conn.kind, client: conn.client, early: true }, 'connection accepted');
    } else {
      // Full now: refused as any accept would be; its early leg closes with it, and
      // gives back its early reservation, not a slot.
      this.#countOverload(conn.kind, conn.client, limit);
      conn.fail(new OverloadError(`connection refused: ${limit} connections are open`));
    }
    // A failed early leg resets the client here, with the failure's code in its record.
    conn.attachDownstream(socket);
    return true;
  }

  /** The target of a SYN, when known at the SYN: a -L listener's, or an intercepted destination. */
  readonly #earlyTarget = (syn: SynEvent): EarlyTarget | undefined => {
    const state = this.#state;
    for (const [key, source] of state.forwards) {
      const at = this.#listeners.address(key);
      if (at !== undefined && at.port === syn.dport && hostMatches(at.address, syn.daddr)) return { kind: 'forward', destination: source.targetOf() };
    }
    for (const rule of state.interceptRules) {
      if (rule.ports !== undefined && (syn.dport < rule.ports.first || syn.dport > rule.ports.last)) continue;
      if (rule.cidr.contains(syn.daddr)) {
        return { kind: 'intercept', destination: { target: { host: canonicalAddress(syn.daddr), port: syn.dport }, requestedByPeer: true } };
      }
    }
    return undefined;
  };

  /** A connection whose upstream half opens now, at the SYN; its downstream half comes at accept. */
  readonly #openEarly = (syn: SynEvent, early: EarlyTarget): SplitConnection => {
    const state = this.#state;
    const { config } = state;
    const limit = this.#connectionLimit(config);
    if (this.#earlyUnsent.count >= MAX_UNSENT_EARLY_HEADERS) throw new OverloadError('early legs to peers are waiting for their connect');
    // A route to a peer with a pool takes its pooled leg here, at the SYN, and
    // headerAtConnect() sends the TARGET frame on it at once (the paper's +ES+CP): R_S
    // connects to the server while the client's handshake is still under way. A name to
    // resolve first is left to accept.
    const route = state.router.route(early.destination.target, config.connectTimeoutMs);
    if (route instanceof Promise) throw new OverloadError('the route is resolved later: the leg is opened at accept');
    // Room relay-wide: connections and early legs together below the limit (and within
    // the open-files budget), so that none is opened for a SYN whose accept would find
    // the relay full. Given back at the claim or when the leg closes unclaimed.
    if (this.#closing || !this.#slots.tryTakeEarly(limit)) {
      throw new OverloadError('no room for an early leg: the connections and early legs reach the limit');
    }
    const conn = new SplitConnection({
      id: this.#slots.nextId(),
      kind: early.kind,
      client: `${canonicalAddress(syn.saddr)}:${syn.sport}`,
      target: early.destination.target,
      timeouts: {
        connectTimeoutMs: config.connectTimeoutMs,
        idleTimeoutMs: config.idleTimeoutMs,
        // The pairing table drops an unclaimed leg first; this is the backstop.
        pairTimeoutMs: (this.#early?.timeoutMs ?? 0) + PAIR_MARGIN_MS,
      },
      onClose: this.#onConnectionClosed,
    });
    this.#connections.add(conn);
    this.#earlyUnclaimed.add(conn);
    openNextLeg(conn, early.destination, {
      router: state.router, legs: headerAtConnect(state.legs, this.#earlyUnsent), policy: state.policy, connectTimeoutMs: config.connectTimeoutMs,
      onDenied: this.#onPolicyDenied, onOpened: this.#onLegOpened,
    });
    return conn;
  };

  readonly #onPolicyDenied = (): void => { this.metrics.policyDenied(1); };
  readonly #onLegOpened = (leg: NextLeg): void => { this.metrics.nextLeg(1, labelsFor('kind', leg.route)); };
}

/** How much later than the header and connect timeouts the pairing backstop fires. */
const PAIR_MARGIN_MS = 1000;

function noop(): void { /* errors of a socket being discarded */ }

/** A listener's bound address matches a SYN's destination: the same address, or a wildcard of its family. */
function hostMatches(bound: string, daddr: string): boolean {
  if (bound === '::') return true;
  const d = canonicalAddress(daddr);
  if (bound === '0.0.0.0') return !d.includes(':');
  return canonicalAddress(bound) === d;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
