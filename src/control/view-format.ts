/** `tcpsplit ctl` output: a RelayView as tables a person reads. */
import type { ConnectionView, ErrorView, PeerView, RelayView } from './relay-view.js';

export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows.reduce<number[]>((w, r) => r.map((c, i) => Math.max(w[i] ?? 0, c.length)), []);
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n');
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${String(n)} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u] ?? 'TB'}`;
}

export function formatAge(ms: number): string {
  if (ms < 1000) return `${String(Math.round(ms))}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${String(s)}s`;
  if (s < 3600) return `${String(Math.floor(s / 60))}m${String(s % 60).padStart(2, '0')}s`;
  return `${String(Math.floor(s / 3600))}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

const onOff = (b: boolean): string => (b ? 'on' : 'off');
const ms = (v: number | undefined): string => (v === undefined ? '-' : `${v.toFixed(1)} ms`);

export function formatPeers(peers: readonly PeerView[]): string {
  if (peers.length === 0) return 'no peers';
  return table([['peer', 'endpoint', 'pool', 'ready', 'low/high', 'takes', 'misses', 'stale', 'refill-fail', 'rtt', 'cwnd', 'turbo'],
    ...peers.map((p) => [p.name, p.endpoint, onOff(p.pool.enabled), String(p.pool.size), `${String(p.pool.low)}/${String(p.pool.high)}`,
      String(p.pool.takes), String(p.pool.misses), String(p.pool.stale), String(p.pool.refillFailures), ms(p.rttMs),
      p.cwnd === undefined ? '-' : String(p.cwnd), p.turbo])]);
}

export function formatConnections(conns: readonly ConnectionView[], open: number): string {
  if (conns.length === 0) return 'no open connections';
  const rows = table([['id', 'worker', 'kind', 'client', 'target', 'via', 'age', 'up', 'down'],
    ...conns.map((c) => [String(c.id), String(c.worker), c.kind, c.client, c.target, c.via, formatAge(c.ageMs), formatBytes(c.up), formatBytes(c.down)])]);
  return open > conns.length ? `${rows}\n(${String(conns.length)} longest-lived of ${String(open)} open)` : rows;
}

export function formatErrors(errors: readonly ErrorView[]): string {
  if (errors.length === 0) return 'no errors';
  return table([['when', 'worker', 'code', 'what'],
    ...errors.map((e) => [new Date(e.at).toISOString().slice(11, 23), String(e.worker), e.code, e.message])]);
}

export function formatStatus(v: RelayView): string {
  const up = formatAge(v.at - v.startedAt);
  const lines = [
    `relay up ${up}; log level ${v.logLevel}; early SYN ${onOff(v.features.earlySyn)}, pool ${onOff(v.features.pool)}, Turbo-Start ${onOff(v.features.turbo)}`,
    `connections: ${String(v.open)} open, ${String(v.closed)} closed (${String(v.failed)} failed); bytes up ${formatBytes(v.bytes.up)}, down ${formatBytes(v.bytes.down)}`,
    ...v.listeners.map((l) => `listening: ${l}`),
    '',
    table([['worker', 'thread', 'alive', 'open', 'accepted', 'loop lag'],
      ...v.workers.map((w) => [String(w.index), String(w.threadId), w.alive ? 'yes' : 'NO', String(w.open), String(w.accepted), ms(w.loopLagMs)])]),
    '',
    formatPeers(v.peers),
  ];
  if (v.routes.length > 0) lines.push('', table([['route', 'via'], ...v.routes.map((r) => [r.cidr, r.via])]));
  if (v.recentErrors.length > 0) lines.push('', `recent errors (newest first):`, formatErrors(v.recentErrors.slice(0, 5)));
  return `${lines.join('\n')}\n`;
}
