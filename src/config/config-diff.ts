/**
 * What a reload changes, field by field, in the option names an operator wrote. The key
 * is compared but never shown: its entry says only "changed".
 */
import type { Endpoint, RelayConfig } from './relay-config.js';

export interface ConfigChange {
  /** The long option name: `log-level`, `metrics`, `key`. */
  readonly option: string;
  /** `'info -> debug'`; for the key, `'changed'`. */
  readonly change: string;
}

type Field = Exclude<keyof RelayConfig, 'configFile'>;

const OPTION_OF: Readonly<Record<Field, string>> = {
  forwards: 'forward', peers: 'peer', routes: 'route', accept: 'accept', key: 'key', insecure: 'insecure',
  allow: 'allow', deny: 'deny', metrics: 'metrics', connectTimeoutMs: 'connect-timeout', idleTimeoutMs: 'idle-timeout',
  headerTimeoutMs: 'header-timeout', drainTimeoutMs: 'drain-timeout', keepaliveMs: 'keepalive',
  maxClockSkewMs: 'max-clock-skew', maxConnections: 'max-connections', maxPendingPerSource: 'max-pending-per-source',
  workers: 'workers', backlog: 'backlog', logLevel: 'log-level', intercept: 'intercept', earlySyn: 'early-syn',
  pool: 'pool', poolLow: 'pool-low', poolHigh: 'pool-high', poolMaxIdleMs: 'pool-max-idle',
  turbo: 'turbo', turboInitCwnd: 'turbo-initcwnd', turboInitRwnd: 'turbo-initrwnd', control: 'control', poolPeers: 'pool-peer',
};

/**
 * Options a running relay cannot take up: --max-clock-skew sizes the replay guard's
 * memory of nonces, and widening it live would let a header older than that memory be
 * replayed. The intercept rules and their listener are set up once, with privileges a
 * relay may drop after start. --workers: the supervisor starts its workers, listeners
 * and steering program for one count (src/worker/supervisor.ts is built so the count can
 * change live later). --backlog: it is set when a listener is created, and listeners are
 * kept across reloads. A reload that changes one is refused whole. (--early-syn is
 * not one: the supervisor starts or stops the capture; listeners always save SYNs.)
 */
export const RESTART_ONLY: readonly string[] = ['max-clock-skew', 'intercept', 'workers', 'backlog', 'control'];

export function diffConfigs(before: RelayConfig, after: RelayConfig): ConfigChange[] {
  const changes: ConfigChange[] = [];
  for (const field of Object.keys(OPTION_OF) as Field[]) {
    const option = OPTION_OF[field];
    if (field === 'key') {
      const same = before.key === undefined || after.key === undefined ? before.key === after.key : before.key.equals(after.key);
      if (!same) changes.push({ option, change: before.key === undefined ? 'added' : after.key === undefined ? 'removed' : 'changed' });
      continue;
    }
    const unit = field.endsWith('Ms') ? 'ms' : '';
    const from = `${show(before[field])}${unit}`;
    const to = `${show(after[field])}${unit}`;
    if (from !== to) changes.push({ option, change: `${from} -> ${to}` });
  }
  return changes;
}

function show(value: unknown): string {
  if (value === undefined) return 'none';
  if (Array.isArray(value)) return `[${value.map(show).join(', ')}]`;
  if (isEndpoint(value)) return value.host.includes(':') ? `[${value.host}]:${value.port}` : `${value.host}:${value.port}`;
  if (typeof value === 'object' && value !== null) {
    if ('listen' in value && 'target' in value) return `${show(value.listen)}:${show(value.target)}`;
    if ('name' in value && 'endpoint' in value) return `${String(value.name)}=${show(value.endpoint)}`;
    if ('name' in value) return `${String(value.name)}=${Object.entries(value).filter(([k]) => k !== 'name').map(([k, v]) => `${k}:${show(v)}`).join(',')}`;
    if ('cidr' in value && 'via' in value) return `${String(value.cidr)}=${String(value.via)}`;
    if ('path' in value && 'explicit' in value) return String(value.path);
  }
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

function isEndpoint(value: unknown): value is Endpoint {
  return typeof value === 'object' && value !== null && 'host' in value && 'port' in value && Object.keys(value).length === 2;
}

/** `log-level info -> debug; key changed`, or `nothing changed`. */
export function describeChanges(changes: readonly ConfigChange[]): string {
  if (changes.length === 0) return 'nothing changed';
  return changes.map((c) => `${c.option} ${c.change}`).join('; ');
}
