import { DIRECT, poolOf, type RelayConfig } from '../config/relay-config.js';
import { formatEndpoint } from '../config/load-config.js';
import { BUILTIN_DENY } from '../net/address-policy.js';
import { nextHopOf } from '../config/config-warnings.js';
import { somaxconnWarning } from '../worker/somaxconn.js';
import { formatInterceptRule } from '../intercept/intercept-spec.js';
import { tableName } from '../intercept/nft-rules.js';

const ep = formatEndpoint;

/** `tcpsplit relay --check`: what a valid config makes the relay do, in plain words. */
export function describeConfig(config: RelayConfig, warnings: readonly string[]): string {
  const lines: string[] = ['config OK'];
  if (config.configFile !== undefined) lines.push(`  file: ${config.configFile}`);
  for (const f of config.forwards) {
    const hop = nextHopOf(config, f.target);
    const via = hop === undefined ? 'via the route of the address the name resolves to' : hop === DIRECT ? 'direct' : `via peer ${hop}`;
    lines.push(`  forward: listen ${ep(f.listen)} -> ${ep(f.target)}, ${via}`);
  }
  if (config.accept !== undefined) lines.push(`  accept: relay connections on ${ep(config.accept)}`);
  const icpt = config.intercept;
  if (icpt !== undefined) {
    lines.push(`  intercept (${icpt.mode}${icpt.iface === undefined ? '' : `, arriving on ${icpt.iface}`}): ${icpt.rules.map(formatInterceptRule).join(', ')}`
      + ` -> listener ${ep(icpt.listen)}, nftables table inet ${tableName(icpt.instance)}; routed like any target, needs CAP_NET_ADMIN`);
  }
  for (const p of config.peers) lines.push(`  peer ${p.name}: ${ep(p.endpoint)}`);
  for (const r of config.routes) lines.push(`  route ${r.cidr} -> ${r.via === DIRECT ? 'direct' : `peer ${r.via}`}`);
  lines.push(`  route (default) -> direct`);
  lines.push(`  key: ${config.key !== undefined ? `${config.key.length} bytes` : config.insecure ? 'none (--insecure: headers authenticate nothing)' : 'none'}`);
  if (config.accept !== undefined || icpt !== undefined) {
    const builtins = [...new Set(BUILTIN_DENY.map((d) => d.reason))].join(', ');
    lines.push(`  policy for ${icpt === undefined ? "peers'" : 'peers\' and intercepted'} targets: deny built-in (${builtins}, own addresses)`);
    for (const c of config.allow) lines.push(`    allow ${c}`);
    for (const c of config.deny) lines.push(`    deny ${c}`);
    lines.push(`    otherwise ${config.allow.length > 0 ? 'deny (allow-list)' : 'allow'}`);
  }
  if (config.metrics !== undefined) lines.push(`  metrics: http://${ep(config.metrics)}/metrics`);
  lines.push(`  timeouts: connect ${config.connectTimeoutMs} ms, idle ${config.idleTimeoutMs} ms, header ${config.headerTimeoutMs} ms, drain ${config.drainTimeoutMs} ms; keepalive ${config.keepaliveMs} ms`);
  lines.push(`  max connections ${config.maxConnections}, max clock skew ${config.maxClockSkewMs} ms, log level ${config.logLevel}`);
  lines.push(`  workers: ${config.workers} thread${config.workers === 1 ? '' : 's'}, each with its own listeners; backlog ${config.backlog}`);
  for (const line of describePoolAndTurbo(config)) lines.push(`  ${line}`);
  const backlog = somaxconnWarning(config.backlog);
  if (backlog !== undefined) lines.push(`  warning: ${backlog}`);
  for (const w of warnings) lines.push(`  warning: ${w}`);
  return `${lines.join('\n')}\n`;
}

/** The pool and Turbo-Start as the relay will run them (also logged at start). */
export function describePoolAndTurbo(config: RelayConfig): string[] {
  if (config.peers.length === 0) {
    return [`pool: none (no --peer)${config.accept === undefined ? '' : '; --accept keeps peers\' authenticated idle connections, with no header deadline'}`,
      `turbo: ${config.turbo && config.accept !== undefined ? 'large buffers on the --accept listener (relay-to-relay legs)' : 'nothing to apply (no --peer)'}`];
  }
  const own = (config.poolPeers ?? []).map((p) => {
    const t = poolOf(config, p.name);
    return t.pool ? `pool for ${p.name}: on, ${t.low} to ${t.high} ready connections per worker, closed unused after ${t.maxIdleMs} ms (--pool-peer)`
      : `pool for ${p.name}: off (--pool-peer)`;
  });
  return [
    config.pool
      ? `pool: on, ${config.poolLow} to ${config.poolHigh} ready connections per peer and worker, closed unused after ${config.poolMaxIdleMs} ms`
      : 'pool: off (every peer leg is dialled per connection)',
    ...own,
    config.turbo
      ? `turbo: on, routes to ${config.peers.map((p) => p.name).join(', ')} with initcwnd ${config.turboInitCwnd} initrwnd ${config.turboInitRwnd} (needs CAP_NET_ADMIN), large buffers on relay-to-relay legs only`
      : 'turbo: off',
  ];
}
