/**
 * The validated shape of a relay's configuration. Flags (`tcpsplit relay -L ...`) and a
 * YAML file (`--config FILE`) carry the same options and both end up here.
 * Durations are in milliseconds and say so in their names.
 */

import type { InterceptConfig } from '../intercept/intercept-spec.js';

/** A TCP endpoint. `host` is an IPv4 literal, an IPv6 literal (no brackets) or a DNS name. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** `-L [bind:]port:host:hostport`, like `ssh -L`. The bind address defaults to 127.0.0.1. */
export interface ForwardSpec {
  readonly listen: Endpoint;
  readonly target: Endpoint;
}

/** `--peer NAME=HOST:PORT`: a next-hop relay. */
export interface PeerSpec {
  readonly name: string;
  readonly endpoint: Endpoint;
}

/** `--route CIDR=NAME` or `--route CIDR=direct`. The longest prefix wins; the default is direct. */
export interface RouteSpec {
  readonly cidr: string;
  readonly via: string; // a peer name, or 'direct'
}

export const DIRECT = 'direct';

/** `--pool-peer NAME=low:N,high:N,max-idle:DUR,pool:on|off`: one peer's pool, unlike the rest. */
export interface PoolPeerSpec {
  readonly name: string;
  readonly low?: number;
  readonly high?: number;
  readonly maxIdleMs?: number;
  readonly pool?: boolean;
}

export interface RelayConfig {
  readonly forwards: readonly ForwardSpec[];
  readonly peers: readonly PeerSpec[];
  readonly routes: readonly RouteSpec[];
  /** `--accept [bind:]port`: accept relay connections from peers. Bind defaults to 0.0.0.0. */
  readonly accept: Endpoint | undefined;
  /** The pre-shared key (raw bytes, >= 16), from `--key-file` or TCPSPLIT_KEY / TCPSPLIT_KEY_FILE. */
  readonly key: Buffer | undefined;
  /** `--insecure`: allow `--accept` without a key (lab only). */
  readonly insecure: boolean;
  /** `--allow CIDR` / `--deny CIDR`: what this relay connects to on a peer's behalf. */
  readonly allow: readonly string[];
  readonly deny: readonly string[];
  /**
   * `--intercept CIDR[:PORT[-PORT]]` and its companions: connections routed through this
   * host to those destinations are diverted to the relay (docs/intercept.md). Unset
   * without --intercept.
   */
  readonly intercept?: InterceptConfig;
  /** `--metrics [bind:]port`: Prometheus text at /metrics. Bind defaults to 127.0.0.1. */
  readonly metrics: Endpoint | undefined;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly headerTimeoutMs: number;
  readonly drainTimeoutMs: number;
  readonly keepaliveMs: number;
  /** How far a header's timestamp may be from this relay's clock (replay window). */
  readonly maxClockSkewMs: number;
  /**
   * Split connections open at once; beyond it new ones are reset at accept. Each takes
   * two file descriptors, so the default keeps well inside a 20,000 open-files limit.
   */
  readonly maxConnections: number;
  /**
   * Peer connections one source (IPv4 address, IPv6 /64) may have waiting for their
   * header; a source at the cap loses its own oldest one (src/relay/admission.ts).
   */
  readonly maxPendingPerSource: number;
  /**
   * `--workers N`: worker threads started in advance, each with its own listener per
   * endpoint (SO_REUSEPORT, steered by src/net/steer.ts). Restart-only for now.
   */
  readonly workers: number;
  /** `--backlog N`: each listener's accept queue (listen(2)); the kernel caps it at net.core.somaxconn. */
  readonly backlog: number;
  /**
   * `--early-syn on|off`: start the next leg when the client's SYN arrives (NFQUEUE,
   * docs/early-syn.md), for -L and --intercept listeners. On by default; without
   * CAP_NET_ADMIN or iptables the relay warns once and runs without. A reload or `tcpsplit ctl set early-syn=off` switches it.
   */
  readonly earlySyn: boolean;
  /**
   * `--pool on|off` and its watermarks (docs/pool.md): each worker keeps, per peer, ready
   * authenticated connections between `poolLow` and `poolHigh`, none older than
   * `poolMaxIdleMs`. Only relays with a --peer have a pool; on by default.
   */
  readonly pool: boolean;
  readonly poolLow: number;
  readonly poolHigh: number;
  readonly poolMaxIdleMs: number;
  /** Per-peer exceptions to the four above (--pool-peer); absent: none. */
  readonly poolPeers?: readonly PoolPeerSpec[];
  /**
   * `--turbo on|off` (docs/pool.md): per-peer routes with `initcwnd`/`initrwnd` segments
   * (applied once per relay by the supervisor) and large buffers set before connect on
   * relay-to-relay legs, never on Internet-facing ones. On by default.
   */
  readonly turbo: boolean;
  readonly turboInitCwnd: number;
  readonly turboInitRwnd: number;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** The file the config came from, if any: SIGHUP re-reads it. */
  readonly configFile: string | undefined;
  /**
   * `--control PATH|off`: the control API's unix socket (docs/control.md); default
   * /run/tcpsplit/control.sock. `explicit`: given by the operator, so a socket another
   * relay holds fails the start (the default only warns). Restart-only.
   */
  readonly control?: { readonly path: string; readonly explicit: boolean } | undefined;
}

export const DEFAULTS = {
  connectTimeoutMs: 10_000,
  idleTimeoutMs: 300_000,
  headerTimeoutMs: 3_000,
  drainTimeoutMs: 30_000,
  keepaliveMs: 15_000,
  maxClockSkewMs: 30_000,
  maxConnections: 8_000,
  maxPendingPerSource: 64,
  logLevel: 'info',
  /** Holds a burst of 2,000 simultaneous connects (Node's default 511 lost 98 of them; issue 7). */
  backlog: 4096,
  /** On; off with a warning where the relay lacks the privileges (docs/early-syn.md). */
  earlySyn: true,
  pool: true,
  /** KTCP's watermarks. */
  poolLow: 4,
  poolHigh: 16,
  /** Below the 60 s idle timeout of common cloud load balancers (and NATs' 350 s). */
  poolMaxIdleMs: 60_000,
  turbo: true,
  turboInitCwnd: 100,
  turboInitRwnd: 100,
} as const;

/** The largest --workers: more threads than this only cost memory on any machine tcpsplit targets. */
export const MAX_WORKERS = 256;

/** One peer's pool settings in force: its --pool-peer entry over the relay-wide options. */
export function poolOf(config: Pick<RelayConfig, 'pool' | 'poolLow' | 'poolHigh' | 'poolMaxIdleMs' | 'poolPeers'>, peer: string): { pool: boolean; low: number; high: number; maxIdleMs: number } {
  const own = config.poolPeers?.find((p) => p.name === peer);
  return { pool: own?.pool ?? config.pool, low: own?.low ?? config.poolLow, high: own?.high ?? config.poolHigh, maxIdleMs: own?.maxIdleMs ?? config.poolMaxIdleMs };
}
