/**
 * The relay's options, once, for both the command line and the YAML file: the YAML key
 * is the long option name without `--` (`key-file`, `connect-timeout`), and `forward`
 * is the long name of `-L`.
 */
import { ConfigError } from '../errors.js';
import {
  BadValue, parseCidr, parseDuration, parseForward, parseListen, parsePeer, parsePoolPeer, parseRoute,
} from './value-parsers.js';
import { MAX_WORKERS, type Endpoint, type ForwardSpec, type PeerSpec, type PoolPeerSpec, type RelayConfig, type RouteSpec } from './relay-config.js';
import {
  parseInstanceName, parseInterceptMode, parseInterceptRule, parseInterfaceName, type InterceptMode, type InterceptRule,
} from '../intercept/intercept-spec.js';

export type LogLevel = RelayConfig['logLevel'];
export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** What one source (argv or a file) said; unset scalars are absent. */
export interface RelayOptions {
  forwards: ForwardSpec[];
  peers: PeerSpec[];
  routes: RouteSpec[];
  allow: string[];
  deny: string[];
  intercepts: InterceptRule[];
  interceptMode?: InterceptMode;
  interceptIface?: string;
  interceptListen?: Endpoint;
  instance?: string;
  accept?: Endpoint;
  keyFile?: string;
  insecure?: boolean;
  metrics?: Endpoint;
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
  headerTimeoutMs?: number;
  drainTimeoutMs?: number;
  keepaliveMs?: number;
  maxClockSkewMs?: number;
  maxConnections?: number;
  maxPendingPerSource?: number;
  workers?: number;
  backlog?: number;
  earlySyn?: boolean;
  pool?: boolean;
  poolLow?: number;
  poolHigh?: number;
  poolMaxIdleMs?: number;
  poolPeers?: PoolPeerSpec[];
  turbo?: boolean;
  turboInitCwnd?: number;
  turboInitRwnd?: number;
  logLevel?: LogLevel;
  control?: string;
  configFile?: string;
  check?: boolean;
  help?: boolean;
}

export function emptyOptions(): RelayOptions {
  return { forwards: [], peers: [], routes: [], allow: [], deny: [], intercepts: [] };
}

type DurationKey =
  'connectTimeoutMs' | 'idleTimeoutMs' | 'headerTimeoutMs' | 'drainTimeoutMs' | 'keepaliveMs' | 'maxClockSkewMs' | 'poolMaxIdleMs';

export interface OptionSpec {
  /** Long name without dashes; also the YAML key. */
  readonly name: string;
  readonly short?: string;
  /** `'flag'` takes no value; `'list'` may repeat and adds; `'scalar'` replaces. */
  readonly kind: 'flag' | 'list' | 'scalar';
  /** The value's form, for error messages and help. */
  readonly expected: string;
  /** False for options that make no sense in a file (`config`, `help`). */
  readonly inFile: boolean;
  /** Parses `value` into `into`; throws BadValue. Flags get 'true' or 'false'. */
  readonly apply: (into: RelayOptions, value: string) => void;
}

function duration(name: string, key: DurationKey, allowZero: boolean): OptionSpec {
  return {
    name, kind: 'scalar', inFile: true,
    expected: allowZero ? 'a duration like 500ms, 10s, 5m (0 turns it off)' : 'a duration like 500ms, 10s, 5m',
    apply: (o, v) => { o[key] = parseDuration(v, { allowZero }); },
  };
}

export const OPTIONS: readonly OptionSpec[] = [
  { name: 'forward', short: 'L', kind: 'list', inFile: true, expected: '[bind:]port:host:hostport',
    apply: (o, v) => { o.forwards.push(parseForward(v, '127.0.0.1')); } },
  { name: 'peer', kind: 'list', inFile: true, expected: 'NAME=HOST:PORT',
    apply: (o, v) => { o.peers.push(parsePeer(v)); } },
  { name: 'route', kind: 'list', inFile: true, expected: 'CIDR=NAME or CIDR=direct',
    apply: (o, v) => { o.routes.push(parseRoute(v)); } },
  { name: 'accept', kind: 'scalar', inFile: true, expected: '[bind:]port',
    apply: (o, v) => { o.accept = parseListen(v, '0.0.0.0'); } },
  { name: 'key-file', kind: 'scalar', inFile: true, expected: 'FILE',
    apply: (o, v) => { if (v === '') throw new BadValue('empty file name'); o.keyFile = v; } },
  { name: 'insecure', kind: 'flag', inFile: true, expected: 'true or false',
    apply: (o, v) => { o.insecure = v === 'true'; } },
  { name: 'allow', kind: 'list', inFile: true, expected: 'CIDR, e.g. 10.0.0.0/8',
    apply: (o, v) => { o.allow.push(parseCidr(v).toString()); } },
  { name: 'deny', kind: 'list', inFile: true, expected: 'CIDR, e.g. 10.0.0.0/8',
    apply: (o, v) => { o.deny.push(parseCidr(v).toString()); } },
  { name: 'intercept', kind: 'list', inFile: true, expected: 'CIDR[:PORT[-PORT]], e.g. 198.18.3.0/24 or 198.18.3.0/24:80-443',
    apply: (o, v) => { o.intercepts.push(parseInterceptRule(v)); } },
  { name: 'intercept-mode', kind: 'scalar', inFile: true, expected: 'redirect|tproxy',
    apply: (o, v) => { o.interceptMode = parseInterceptMode(v); } },
  { name: 'intercept-iface', kind: 'scalar', inFile: true, expected: 'an interface name',
    apply: (o, v) => { o.interceptIface = parseInterfaceName(v); } },
  { name: 'intercept-listen', kind: 'scalar', inFile: true, expected: '[bind:]port (not 0)',
    apply: (o, v) => {
      const at = parseListen(v, '::');
      if (at.port === 0) throw new BadValue('the intercept listener needs a fixed port: the rules name it');
      o.interceptListen = at;
    } },
  { name: 'instance', kind: 'scalar', inFile: true, expected: '1..32 of [a-z0-9_]',
    apply: (o, v) => { o.instance = parseInstanceName(v); } },
  { name: 'metrics', kind: 'scalar', inFile: true, expected: '[bind:]port',
    apply: (o, v) => { o.metrics = parseListen(v, '127.0.0.1'); } },
  duration('connect-timeout', 'connectTimeoutMs', false),
  duration('idle-timeout', 'idleTimeoutMs', true),
  duration('header-timeout', 'headerTimeoutMs', false),
  duration('drain-timeout', 'drainTimeoutMs', true),
  duration('keepalive', 'keepaliveMs', true),
  duration('max-clock-skew', 'maxClockSkewMs', false),
  { name: 'max-connections', kind: 'scalar', inFile: true, expected: 'a whole number from 1 to 1000000',
    apply: (o, v) => {
      if (!/^\d+$/.test(v)) throw new BadValue('not a whole number');
      const n = Number(v);
      if (n < 1 || n > 1_000_000) throw new BadValue('out of range');
      o.maxConnections = n;
    } },
  { name: 'max-pending-per-source', kind: 'scalar', inFile: true, expected: 'a whole number from 1 to 1000000',
    apply: (o, v) => {
      const n = Number(v);
      if (!/^\d+$/.test(v) || n < 1 || n > 1_000_000) throw new BadValue('out of range');
      o.maxPendingPerSource = n;
    } },
  { name: 'workers', kind: 'scalar', inFile: true, expected: `a whole number from 1 to ${MAX_WORKERS} (worker threads; default: the number of CPUs)`,
    apply: (o, v) => { o.workers = wholeNumber(v, 1, MAX_WORKERS); } },
  { name: 'backlog', kind: 'scalar', inFile: true, expected: 'a whole number from 1 to 65535 (each listener\'s accept queue)',
    apply: (o, v) => { o.backlog = wholeNumber(v, 1, 65535); } },
  { name: 'early-syn', kind: 'scalar', inFile: true, expected: 'on|off (start the next leg at the client\'s SYN; default on)',
    apply: (o, v) => { o.earlySyn = onOff(v); } },
  { name: 'pool', kind: 'scalar', inFile: true, expected: 'on or off (pre-established connections to each peer; default on)',
    apply: (o, v) => { o.pool = onOff(v); } },
  { name: 'pool-low', kind: 'scalar', inFile: true, expected: 'a whole number from 0 to 1024 (ready connections per peer and worker; default 4)',
    apply: (o, v) => { o.poolLow = wholeNumber(v, 0, 1024); } },
  { name: 'pool-high', kind: 'scalar', inFile: true, expected: 'a whole number from 1 to 1024 (most connections per peer and worker; default 16)',
    apply: (o, v) => { o.poolHigh = wholeNumber(v, 1, 1024); } },
  duration('pool-max-idle', 'poolMaxIdleMs', false),
  { name: 'pool-peer', kind: 'list', inFile: true, expected: 'NAME=SETTING,... with low:N, high:N, max-idle:DURATION, pool:on|off (one peer\'s pool)',
    apply: (o, v) => { (o.poolPeers ??= []).push(parsePoolPeer(v)); } },
  { name: 'turbo', kind: 'scalar', inFile: true, expected: 'on or off (Turbo-Start on relay-to-relay legs; default on)',
    apply: (o, v) => { o.turbo = onOff(v); } },
  { name: 'turbo-initcwnd', kind: 'scalar', inFile: true, expected: 'a whole number from 1 to 65535 (segments; default 100)',
    apply: (o, v) => { o.turboInitCwnd = wholeNumber(v, 1, 65535); } },
  { name: 'turbo-initrwnd', kind: 'scalar', inFile: true, expected: 'a whole number from 1 to 65535 (segments; default 100)',
    apply: (o, v) => { o.turboInitRwnd = wholeNumber(v, 1, 65535); } },
  { name: 'control', kind: 'scalar', inFile: true, expected: 'a unix socket path, or off (the control API; default /run/tcpsplit/control.sock)',
    apply: (o, v) => {
      if (v !== 'off' && !v.startsWith('/')) throw new BadValue('not an absolute path');
      o.control = v;
    } },
  { name: 'log-level', kind: 'scalar', inFile: true, expected: LOG_LEVELS.join('|'),
    apply: (o, v) => {
      const level = LOG_LEVELS.find((l) => l === v);
      if (level === undefined) throw new BadValue('unknown level');
      o.logLevel = level;
    } },
  { name: 'config', kind: 'scalar', inFile: false, expected: 'FILE',
    apply: (o, v) => { if (v === '') throw new BadValue('empty file name'); o.configFile = v; } },
  { name: 'check', kind: 'flag', inFile: false, expected: '',
    apply: (o, v) => { o.check = v === 'true'; } },
  { name: 'help', short: 'h', kind: 'flag', inFile: false, expected: '',
    apply: (o, v) => { o.help = v === 'true'; } },
];

/** YAML's booleans arrive as 'true'/'false' (config-file.ts passes scalars through as text). */
function onOff(v: string): boolean {
  if (v === 'on' || v === 'true') return true;
  if (v === 'off' || v === 'false') return false;
  throw new BadValue('neither on nor off');
}

function wholeNumber(v: string, min: number, max: number): number {
  if (!/^\d+$/.test(v)) throw new BadValue('not a whole number');
  const n = Number(v);
  if (n < min || n > max) throw new BadValue('out of range');
  return n;
}

const BY_NAME = new Map(OPTIONS.map((spec) => [spec.name, spec]));
const BY_SHORT = new Map(OPTIONS.flatMap((spec) => (spec.short === undefined ? [] : [[spec.short, spec] as const])));

export function optionByName(name: string): OptionSpec | undefined {
  return BY_NAME.get(name);
}

export function optionByShort(letter: string): OptionSpec | undefined {
  return BY_SHORT.get(letter);
}

/** Applies one value, turning a BadValue into a ConfigError that names `label` and the expected form. */
export function applyOption(spec: OptionSpec, into: RelayOptions, value: string, label: string): void {
  try {
    spec.apply(into, value);
  } catch (err) {
    if (!(err instanceof BadValue)) throw err;
    throw new ConfigError(`${label} '${value}': ${err.message}; expected ${spec.expected}`, { cause: err });
  }
}
