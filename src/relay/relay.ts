import { createServer, type Server, type Socket, type AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Server as HttpServer } from 'node:http';
import type { Logger } from '../observe/logger.js';
import { RelayMetrics, labelsFor } from '../observe/metrics.js';
import { startMetricsServer, serverAddress } from '../observe/metrics-server.js';
import type { Endpoint, RelayConfig } from '../config/relay-config.js';
import { AddressPolicy } from '../net/address-policy.js';
import { HeaderAuth } from '../protocol/header-auth.js';
import { ReplayGuard } from '../protocol/replay-guard.js';
import { Router } from './router.js';
import { SplitConnection, type ConnectionKind, type ConnectionRecord } from './split-connection.js';
import { openDirect, openToPeer, writePreamble } from './next-leg.js';
import { acceptHeader } from './accept-header.js';
import { ConfigError, DrainTimeoutError, FfiUnavailableError, errorCode, InsecureAcceptError, OverloadError, PeerResetError } from '../errors.js';
import { ListenerSet, type WantedListener } from './listener-set.js';
import { prepareSocketCalls } from '../sys/index.js';

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
  readonly auth: HeaderAuth | undefined;
  /** Forward targets by listener key. */
  readonly forwards: ReadonlyMap<string, Endpoint>;
}

function deriveState(config: RelayConfig): RelayState {
  const key = config.key ?? (config.insecure ? INSECURE_KEY : undefined);
  if (config.accept !== undefined && key === undefined) {
    throw new InsecureAcceptError('--accept needs a pre-shared key (--key-file); use --insecure only in a lab');
  }
  return {
    config,
    router: new Router(config),
    policy: new AddressPolicy({ allow: config.allow, deny: config.deny }),
    auth: key === undefined ? undefined : new HeaderAuth(key),
    forwards: new Map(config.forwards.map((f, i) => [forwardKey(f.listen, i), f.target])),
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

export interface RelayOptions {
  readonly logger: Logger;
}

/** The relay daemon: forward listeners (-L), the peer listener (--accept), metrics. */
export class Relay {
  readonly metrics: RelayMetrics;
  readonly #logger: Logger;
  #state: RelayState;
  readonly #replay: ReplayGuard;
  readonly #listeners: ListenerSet;
  #reloads: Promise<void> = Promise.resolve();
  readonly #connections = new Set<SplitConnection>();
  #metricsServer: HttpServer | undefined;
  #nextId = 1;
  #closing = false;
  /** Peer connections still waiting for their header (unauthenticated so far). */
  #pendingHeaders = 0;

  private constructor(config: RelayConfig, options: RelayOptions) {
    this.#logger = options.logger;
    this.#listeners = new ListenerSet(options.logger);
    this.#state = deriveState(config);
    this.#replay = new ReplayGuard({ maxClockSkewMs: config.maxClockSkewMs });
    this.metrics = new RelayMetrics(() => this.#connections.size);
  }

  static async start(config: RelayConfig, options: RelayOptions): Promise<Relay> {
    if (!prepareSocketCalls()) {
      options.logger.warn({ event: 'ffi', code: FfiUnavailableError.code },
        'socket options through koffi are unavailable: a reset right behind data may pass as a clean end, and a killed relay closes legs with FIN');
    }
    const relay = new Relay(config, options);
    try {
      await relay.#listeners.sync(relay.#wantedListeners(relay.#state));
      if (config.metrics !== undefined) {
        relay.#metricsServer = await startMetricsServer(relay.metrics.registry, config.metrics.host, config.metrics.port);
      }
    } catch (err) {
      // Nothing was accepted yet: close quietly (no drain to report).
      relay.#closing = true;
      relay.#listeners.closeAll();
      await relay.#closeMetrics();
      throw err;
    }
    return relay;
  }

  get activeConnections(): number {
    return this.#connections.size;
  }

  /** Bound addresses, by listener: `forward` in config order, then `accept`. */
  addresses(): { forward: AddressInfo[]; accept: AddressInfo | undefined; metrics: AddressInfo | undefined } {
    const { config } = this.#state;
    return {
      forward: config.forwards.flatMap((f, i) => this.#listeners.address(forwardKey(f.listen, i)) ?? []),
      accept: config.accept === undefined ? undefined : this.#listeners.address(acceptKey(config.accept)),
      metrics: this.#metricsServer === undefined ? undefined : serverAddress(this.#metricsServer),
    };
  }

  /**
   * Applies a new config without dropping open connections: new connections use the new
   * routes, peers, policy and key; listeners that went away close, new ones open (bound
   * before anything closes). On any error nothing changes. Reloads run one at a time, in
   * the order asked; while draining they are ignored.
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
    try {
      const next = deriveState(config);
      await this.#listeners.sync(this.#wantedListeners(next));
      if (config.maxClockSkewMs !== this.#state.config.maxClockSkewMs) {
        // The replay guard's window is its memory of nonces; changing it live would forget them.
        this.#logger.warn({ event: 'reload' }, '--max-clock-skew changes take effect at the next restart');
      }
      this.#state = next;
    } catch (err) {
      this.metrics.reloads(1, labelsFor('result', 'error'));
      throw err;
    }
    this.metrics.reloads(1, labelsFor('result', 'ok'));
    this.#logger.info({ event: 'reload', listeners: this.#listeners.keys() }, 'config reloaded');
  }

  /** Counts a reload that failed before it reached the relay (the file did not load). */
  reloadFailed(): void {
    this.metrics.reloads(1, labelsFor('result', 'error'));
  }

  /** Resets every open connection now: the last thing a dying process does (see relay-command). */
  abortAll(reason: Error): void {
    for (const conn of this.#connections) conn.fail(reason);
  }

  /** Stops accepting, lets open connections finish for up to `drainTimeoutMs`, then resets the rest. */
  async drain(drainTimeoutMs = this.#state.config.drainTimeoutMs): Promise<void> {
    this.#closing = true;
    this.#listeners.closeAll();
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
    await this.#closeMetrics();
  }

  /** Closes everything now: open connections are reset. */
  async close(): Promise<void> {
    await this.drain(0);
  }

  async #closeMetrics(): Promise<void> {
    const server = this.#metricsServer;
    this.#metricsServer = undefined;
    if (server !== undefined) await new Promise<void>((r) => { server.close(() => { r(); }); server.closeAllConnections(); });
  }

  #wantedListeners(state: RelayState): Map<string, WantedListener> {
    const wanted = new Map<string, WantedListener>();
    state.config.forwards.forEach((f, i) => {
      const key = forwardKey(f.listen, i);
      wanted.set(key, { endpoint: f.listen, make: () => this.#forwardServer(key) });
    });
    const { accept } = state.config;
    if (accept !== undefined) wanted.set(acceptKey(accept), { endpoint: accept, make: () => this.#acceptServer() });
    return wanted;
  }

  #newConnection(kind: ConnectionKind, socket: Socket): SplitConnection | undefined {
    const { config } = this.#state;
    if (this.#closing || this.#connections.size >= config.maxConnections) {
      socket.on('error', noop);
      socket.resetAndDestroy();
      if (!this.#closing) {
        this.metrics.overload(1);
        this.#logger.debug({ event: 'overload', code: OverloadError.code, open: this.#connections.size }, 'connection refused: --max-connections reached');
      }
      return undefined;
    }
    const conn = new SplitConnection(this.#nextId++, kind, socket, config, this.#onConnectionClosed);
    this.#connections.add(conn);
    this.metrics.accepted(1, labelsFor('listener', kind));
    return conn;
  }

  readonly #onConnectionClosed = (conn: SplitConnection, record: ConnectionRecord): void => {
    this.#connections.delete(conn);
    this.metrics.closed(1, labelsFor('outcome', record.outcome));
    this.metrics.bytes(record.up, UP);
    this.metrics.bytes(record.down, DOWN);
    if (record.connectMs !== undefined) this.metrics.connectSeconds(record.connectMs / 1000);
    if (record.ttfbMs !== undefined) this.metrics.firstByteSeconds(record.ttfbMs / 1000);
    if (record.outcome === 'ok') this.#logger.info(record, 'connection closed');
    else this.#logger.warn(record, 'connection failed');
  };

  #forwardServer(key: string): Server {
    return createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      const conn = this.#newConnection('forward', socket);
      if (conn === undefined) return;
      const state = this.#state;
      conn.target = state.forwards.get(key);
      this.#openNextLeg(conn, state, undefined);
    });
  }

  #acceptServer(): Server {
    return createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      // Unauthenticated connections get a quarter of --max-connections: a flood of them
      // held open until --header-timeout cannot starve forwards and verified peers.
      if (this.#pendingHeaders >= Math.max(1, Math.floor(this.#state.config.maxConnections / 4))) {
        socket.on('error', noop);
        socket.resetAndDestroy();
        this.metrics.overload(1);
        return;
      }
      const conn = this.#newConnection('accept', socket);
      if (conn === undefined) return;
      this.#pendingHeaders++;
      let pending = true;
      const release = (): void => {
        if (pending) { pending = false; this.#pendingHeaders--; }
      };
      socket.once('close', release);
      const state = this.#state;
      const { auth } = state;
      if (auth === undefined) return; // deriveState guarantees a key with --accept
      if (state.config.keepaliveMs > 0) socket.setKeepAlive(true, state.config.keepaliveMs);
      acceptHeader(socket, auth, this.#replay, state.config.headerTimeoutMs, (err, header) => {
        release();
        if (err !== undefined) {
          if (!(err instanceof PeerResetError)) this.metrics.headerRejects(1, labelsFor('code', errorCode(err)));
          conn.fail(err);
          return;
        }
        if (header === undefined) return;
        conn.target = header.target;
        conn.headerBytes = header.length;
        this.#openNextLeg(conn, state, state.policy, header.nonce);
      });
    });
  }

  /**
   * Routes the connection's target and opens the next leg. `policy` is set for
   * peer-requested targets. `nonce` is the incoming header's: a relay passes it on to the
   * next relay, so a routing loop brings it back to a relay that has seen it and is cut
   * there as a replay, instead of multiplying connections until descriptors run out.
   */
  #openNextLeg(conn: SplitConnection, state: RelayState, policy: AddressPolicy | undefined, nonce?: Buffer): void {
    const target = conn.target;
    if (target === undefined) {
      conn.fail(new ConfigError('this listener was removed from the config'));
      return;
    }
    const onDenied = (): void => { this.metrics.policyDenied(1); };
    const open = (route: Awaited<ReturnType<Router['route']>>): void => {
      if (conn.failed) return;
      let upstream: Socket;
      try {
        if (route.kind === 'peer') {
          conn.via = route.peer.name;
          upstream = openToPeer(route.peer, state.config);
        } else {
          conn.via = 'direct';
          upstream = openDirect(target, policy, onDenied);
        }
      } catch (err) {
        conn.fail(err as Error);
        return;
      }
      this.metrics.nextLeg(1, labelsFor('kind', route.kind));
      const auth = route.kind === 'peer' ? state.auth : undefined;
      conn.attachUpstream(upstream, (c) => {
        writePreamble(upstream, target, auth, c.downstream.read() as Buffer | null, nonce);
      });
    };
    try {
      const route = state.router.route(target, state.config.connectTimeoutMs);
      if (route instanceof Promise) route.then(open, (err: unknown) => { conn.fail(err as Error); });
      else open(route);
    } catch (err) {
      conn.fail(err as Error);
    }
  }
}

const UP = labelsFor('direction', 'up');
const DOWN = labelsFor('direction', 'down');

function noop(): void { /* errors of a socket being discarded */ }
