/**
 * Flags + YAML file + environment → a validated RelayConfig.
 *
 * Merge: a flag replaces the file's value for a single-valued option and adds to the
 * file's list for a repeatable one (-L, --peer, --route, --allow, --deny). A reload
 * (SIGHUP) calls loadRelayConfig again with the same argv, which re-reads the file.
 */
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { ConfigError, InsecureAcceptError } from '../errors.js';
import { readConfigFile } from './config-file.js';
import { configWarnings } from './config-warnings.js';
import { parseRelayArgs } from './parse-args.js';
import { DEFAULTS, DIRECT, MAX_WORKERS, poolOf, type Endpoint, type RelayConfig } from './relay-config.js';
import { loadRelayKey } from './relay-key.js';
import type { RelayOptions } from './relay-options.js';
import { DEFAULT_INTERCEPT_LISTEN, defaultInstance, type InterceptConfig } from '../intercept/intercept-spec.js';

export { RELAY_HELP } from './relay-help.js';

/** The control API's socket when --control is not given. */
export const DEFAULT_CONTROL_SOCKET = '/run/tcpsplit/control.sock';

export interface LoadedRelayConfig {
  readonly config: RelayConfig;
  /** Things worth a log line at start and reload that should not stop it (see config-warnings.ts). */
  readonly warnings: readonly string[];
}

/** Throws ConfigError, KeyError or InsecureAcceptError. Check `parseRelayArgs(argv).help` first. */
export async function loadRelayConfig(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<LoadedRelayConfig> {
  return buildRelayConfig(parseRelayArgs(argv), env);
}

/**
 * Run-time changes (the control API) over the file and flags: each key given replaces
 * that option whole, a list included (`allow: [...]` is the new list, not an addition).
 */
export interface Overrides {
  readonly options: RelayOptions;
  /** The option names the change gives. */
  readonly keys: readonly string[];
}

/** The RelayOptions fields a list option fills (a scalar option's field is whatever it sets). */
const LIST_FIELDS: Readonly<Record<string, keyof RelayOptions>> = {
  forward: 'forwards', peer: 'peers', route: 'routes', allow: 'allow', deny: 'deny', intercept: 'intercepts', 'pool-peer': 'poolPeers',
};

export function applyOverrides(base: RelayOptions, overrides: Overrides): RelayOptions {
  const out: RelayOptions = { ...base };
  for (const key of overrides.keys) {
    const field = LIST_FIELDS[key];
    if (field !== undefined) Object.assign(out, { [field]: overrides.options[field] });
  }
  for (const [field, value] of Object.entries(overrides.options) as [string, unknown][]) {
    if (value !== undefined && !Array.isArray(value)) Object.assign(out, { [field]: value });
  }
  return out;
}

/** The config file (if any) read and merged with the flags: what a reload reads again. */
export async function readRelayOptions(args: RelayOptions): Promise<RelayOptions> {
  if (args.help === true) throw new ConfigError('--help asks for the help text, not a config');
  const configFile = args.configFile === undefined ? undefined : resolve(args.configFile);
  const file = configFile === undefined ? undefined : await readConfigFile(configFile);
  // Absolute now, so that a reload after a chdir reads the same files.
  const flags = args.keyFile === undefined ? args : { ...args, keyFile: resolve(args.keyFile) };
  const merged = file === undefined ? flags : mergeOptions(file, flags);
  return configFile === undefined ? merged : { ...merged, configFile };
}

/**
 * `base`: the file and flags as read before (readRelayOptions), so that a run-time
 * change builds on the file as last loaded, not on edits since.
 */
export async function buildRelayConfig(args: RelayOptions, env: NodeJS.ProcessEnv, overrides?: Overrides, base?: RelayOptions): Promise<LoadedRelayConfig> {
  const merged = base ?? await readRelayOptions(args);
  const configFile = merged.configFile;
  const o = overrides === undefined ? merged : applyOverrides(merged, overrides);
  const loadedKey = await loadRelayKey(o.keyFile, env);
  const config: RelayConfig = {
    forwards: o.forwards,
    peers: o.peers,
    routes: o.routes,
    accept: o.accept,
    key: loadedKey?.key,
    insecure: o.insecure ?? false,
    allow: o.allow,
    deny: o.deny,
    metrics: o.metrics,
    ...interceptOf(o),
    connectTimeoutMs: o.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
    idleTimeoutMs: o.idleTimeoutMs ?? DEFAULTS.idleTimeoutMs,
    headerTimeoutMs: o.headerTimeoutMs ?? DEFAULTS.headerTimeoutMs,
    drainTimeoutMs: o.drainTimeoutMs ?? DEFAULTS.drainTimeoutMs,
    maxConnections: o.maxConnections ?? DEFAULTS.maxConnections,
    maxPendingPerSource: o.maxPendingPerSource ?? DEFAULTS.maxPendingPerSource,
    keepaliveMs: o.keepaliveMs ?? DEFAULTS.keepaliveMs,
    maxClockSkewMs: o.maxClockSkewMs ?? DEFAULTS.maxClockSkewMs,
    workers: o.workers ?? Math.min(availableParallelism(), MAX_WORKERS),
    backlog: o.backlog ?? DEFAULTS.backlog,
    earlySyn: o.earlySyn ?? DEFAULTS.earlySyn,
    pool: o.pool ?? DEFAULTS.pool,
    poolLow: o.poolLow ?? DEFAULTS.poolLow,
    poolHigh: o.poolHigh ?? DEFAULTS.poolHigh,
    poolMaxIdleMs: o.poolMaxIdleMs ?? DEFAULTS.poolMaxIdleMs,
    ...(o.poolPeers === undefined || o.poolPeers.length === 0 ? {} : { poolPeers: o.poolPeers }),
    turbo: o.turbo ?? DEFAULTS.turbo,
    turboInitCwnd: o.turboInitCwnd ?? DEFAULTS.turboInitCwnd,
    turboInitRwnd: o.turboInitRwnd ?? DEFAULTS.turboInitRwnd,
    logLevel: o.logLevel ?? DEFAULTS.logLevel,
    configFile,
    control: o.control === 'off' ? undefined : { path: o.control ?? DEFAULT_CONTROL_SOCKET, explicit: o.control !== undefined },
  };
  validateRelayConfig(config);
  return { config, warnings: [...(loadedKey?.warnings ?? []), ...configWarnings(config)] };
}

/** The intercept part of the config; the companions of --intercept without it are an error. */
function interceptOf(o: RelayOptions): { intercept?: InterceptConfig } {
  if (o.intercepts.length === 0) {
    const stray = ([['intercept-mode', o.interceptMode], ['intercept-iface', o.interceptIface], ['intercept-listen', o.interceptListen],
      ['instance', o.instance]] as const).filter(([, v]) => v !== undefined).map(([name]) => `--${name}`);
    if (stray.length > 0) throw new ConfigError(`${stray.join(', ')} without --intercept: give --intercept CIDR[:PORT[-PORT]] too, or drop ${stray.length > 1 ? 'them' : 'it'}`);
    return {};
  }
  const listen = o.interceptListen ?? DEFAULT_INTERCEPT_LISTEN;
  return {
    intercept: {
      rules: o.intercepts, mode: o.interceptMode ?? 'redirect', iface: o.interceptIface, listen,
      instance: o.instance ?? defaultInstance(listen),
    },
  };
}

/** `later` wins for single values and is appended for lists. */
export function mergeOptions(earlier: RelayOptions, later: RelayOptions): RelayOptions {
  const merged: RelayOptions = {
    ...earlier,
    forwards: [...earlier.forwards, ...later.forwards],
    peers: [...earlier.peers, ...later.peers],
    routes: [...earlier.routes, ...later.routes],
    allow: [...earlier.allow, ...later.allow],
    deny: [...earlier.deny, ...later.deny],
    intercepts: [...earlier.intercepts, ...later.intercepts],
    ...(earlier.poolPeers === undefined && later.poolPeers === undefined ? {} : { poolPeers: [...earlier.poolPeers ?? [], ...later.poolPeers ?? []] }),
  };
  for (const [key, value] of Object.entries(later) as [string, unknown][]) {
    if (value !== undefined && !Array.isArray(value)) Object.assign(merged, { [key]: value });
  }
  return merged;
}

/** The rules that involve more than one option. Throws ConfigError or InsecureAcceptError. */
export function validateRelayConfig(config: RelayConfig): void {
  if (config.forwards.length === 0 && config.accept === undefined && config.intercept === undefined) {
    throw new ConfigError('nothing to do: give at least one -L [bind:]port:host:hostport, --accept [bind:]port or --intercept CIDR');
  }
  if (config.poolLow > config.poolHigh) {
    throw new ConfigError(`--pool-low ${config.poolLow} is above --pool-high ${config.poolHigh}`);
  }
  const poolPeers = new Set<string>();
  for (const p of config.poolPeers ?? []) {
    if (!config.peers.some((x) => x.name === p.name)) throw new ConfigError(`--pool-peer ${p.name}: no --peer named '${p.name}'`);
    if (poolPeers.has(p.name)) throw new ConfigError(`--pool-peer ${p.name} is given twice: put its settings in one entry`);
    poolPeers.add(p.name);
    const own = poolOf(config, p.name);
    if (own.low > own.high) throw new ConfigError(`--pool-peer ${p.name}: low ${own.low} is above high ${own.high}`);
  }
  const peers = new Map<string, Endpoint>();
  for (const { name, endpoint } of config.peers) {
    const seen = peers.get(name);
    if (seen !== undefined && !sameEndpoint(seen, endpoint)) {
      throw new ConfigError(`--peer ${name} is defined twice, as ${formatEndpoint(seen)} and ${formatEndpoint(endpoint)}`);
    }
    peers.set(name, endpoint);
  }
  const routes = new Map<string, string>();
  for (const { cidr, via } of config.routes) {
    if (via !== DIRECT && !peers.has(via)) {
      throw new ConfigError(`--route ${cidr}=${via}: no --peer named '${via}' (define it with --peer ${via}=HOST:PORT)`);
    }
    const seen = routes.get(cidr);
    if (seen !== undefined && seen !== via) throw new ConfigError(`--route ${cidr} is given twice, via ${seen} and via ${via}`);
    routes.set(cidr, via);
  }
  const listeners = [
    ...config.forwards.map((f) => ({ what: '-L', at: f.listen })),
    ...(config.accept === undefined ? [] : [{ what: '--accept', at: config.accept }]),
    ...(config.metrics === undefined ? [] : [{ what: '--metrics', at: config.metrics }]),
    ...(config.intercept === undefined ? [] : [{ what: '--intercept-listen', at: config.intercept.listen }]),
  ].filter((l) => l.at.port !== 0);
  for (let i = 0; i < listeners.length; i++) {
    for (let j = i + 1; j < listeners.length; j++) {
      const a = listeners[i];
      const b = listeners[j];
      if (a !== undefined && b !== undefined && sameEndpoint(a.at, b.at)) {
        throw new ConfigError(`${a.what} and ${b.what} both listen on ${formatEndpoint(a.at)}`);
      }
    }
  }
  for (const f of config.forwards) {
    // Forwarding to its own listener would loop until --max-connections is reached.
    const self = listeners.find((l) => l.at.port === f.target.port
      && (l.at.host === f.target.host || (isWildcard(l.at.host) && isLoopbackName(f.target.host))));
    if (self !== undefined) {
      throw new ConfigError(`-L ${formatEndpoint(f.listen)} forwards to ${formatEndpoint(f.target)}, which is this relay's own ${self.what} listener`);
    }
  }
  if (config.key === undefined && !config.insecure) {
    if (config.accept !== undefined) {
      throw new InsecureAcceptError(
        '--accept needs a pre-shared key (--key-file FILE, TCPSPLIT_KEY_FILE or TCPSPLIT_KEY); --insecure runs without one, for labs only');
    }
    if (config.peers.length > 0) {
      throw new InsecureAcceptError(
        '--peer needs a pre-shared key to authenticate to the peer (--key-file FILE, TCPSPLIT_KEY_FILE or TCPSPLIT_KEY); --insecure runs without one, for labs only');
    }
  }
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

function isLoopbackName(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.host === b.host && a.port === b.port;
}

export function formatEndpoint(e: Endpoint): string {
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}
