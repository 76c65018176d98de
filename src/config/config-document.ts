/**
 * A running config written back as a config document: the YAML keys and the forms a
 * person would write (`connect-timeout: 10s`, `pool: on`), for `tcpsplit ctl config`.
 * The key itself is never shown: `key: set` or `key: none`.
 */
import type { Endpoint, RelayConfig } from './relay-config.js';
import { formatEndpoint } from './load-config.js';

export type ShownValue = string | number | boolean | readonly string[] | Readonly<Record<string, string>>;

export function formatDurationMs(ms: number): string {
  if (ms === 0) return '0';
  if (ms % 60_000 === 0) return `${String(ms / 60_000)}m`;
  if (ms % 1000 === 0) return `${String(ms / 1000)}s`;
  return `${String(ms)}ms`;
}

const onOff = (b: boolean): string => (b ? 'on' : 'off');
const at = (e: Endpoint | undefined): string => (e === undefined ? 'none' : formatEndpoint(e));

export function documentOf(c: RelayConfig): Record<string, ShownValue> {
  const ic = c.intercept;
  return {
    forward: c.forwards.map((f) => `${formatEndpoint(f.listen)}:${formatEndpoint(f.target)}`),
    peer: Object.fromEntries(c.peers.map((p) => [p.name, formatEndpoint(p.endpoint)])),
    route: Object.fromEntries(c.routes.map((r) => [r.cidr, r.via])),
    accept: at(c.accept),
    key: c.key === undefined ? 'none' : 'set',
    insecure: c.insecure,
    allow: c.allow,
    deny: c.deny,
    ...(ic === undefined ? {} : {
      intercept: ic.rules.map((r) => (r.ports === undefined ? r.cidr : `${r.cidr}:${String(r.ports.first)}-${String(r.ports.last)}`)),
      'intercept-mode': ic.mode, 'intercept-iface': ic.iface ?? 'any', 'intercept-listen': formatEndpoint(ic.listen), instance: ic.instance,
    }),
    metrics: at(c.metrics),
    'connect-timeout': formatDurationMs(c.connectTimeoutMs),
    'idle-timeout': formatDurationMs(c.idleTimeoutMs),
    'header-timeout': formatDurationMs(c.headerTimeoutMs),
    'drain-timeout': formatDurationMs(c.drainTimeoutMs),
    keepalive: formatDurationMs(c.keepaliveMs),
    'max-clock-skew': formatDurationMs(c.maxClockSkewMs),
    'max-connections': c.maxConnections,
    'max-pending-per-source': c.maxPendingPerSource,
    workers: c.workers,
    backlog: c.backlog,
    'early-syn': onOff(c.earlySyn),
    pool: onOff(c.pool),
    'pool-low': c.poolLow,
    'pool-high': c.poolHigh,
    'pool-max-idle': formatDurationMs(c.poolMaxIdleMs),
    'pool-peer': Object.fromEntries((c.poolPeers ?? []).map((p) => [p.name, [
      ...(p.low === undefined ? [] : [`low:${String(p.low)}`]), ...(p.high === undefined ? [] : [`high:${String(p.high)}`]),
      ...(p.maxIdleMs === undefined ? [] : [`max-idle:${formatDurationMs(p.maxIdleMs)}`]), ...(p.pool === undefined ? [] : [`pool:${p.pool ? 'on' : 'off'}`]),
    ].join(',')])),
    turbo: onOff(c.turbo),
    'turbo-initcwnd': c.turboInitCwnd,
    'turbo-initrwnd': c.turboInitRwnd,
    'log-level': c.logLevel,
    control: c.control?.path ?? 'off',
  };
}
