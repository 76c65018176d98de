/**
 * What a valid config probably gets wrong. Each is a warning, not an error: the relay
 * would run as written, but not as meant. `relay --check` prints them and the relay
 * logs them at start and at every reload.
 */
import { isIP } from 'node:net';
import { RouteTable } from '../net/route-table.js';
import { DIRECT, type Endpoint, type RelayConfig } from './relay-config.js';

/** A forward target's next hop: a peer's name, 'direct', or undefined for a DNS name (routed by its address at connect time). */
export function nextHopOf(config: Pick<RelayConfig, 'peers' | 'routes'>, target: Endpoint): string | undefined {
  if (config.peers.length === 0) return DIRECT;
  if (isIP(target.host) === 0) return undefined;
  const table = new RouteTable<string>();
  for (const r of config.routes) table.add(r.cidr, r.via);
  return table.lookup(target.host) ?? DIRECT;
}

export function configWarnings(config: RelayConfig): string[] {
  const warnings: string[] = [];
  if (config.peers.length > 0) {
    for (const f of config.forwards) {
      if (nextHopOf(config, f.target) === DIRECT) {
        warnings.push(`-L ${hostPort(f.listen)} goes direct to ${hostPort(f.target)}, not through a peer, though peers are configured: add --route ${f.target.host}/${isIP(f.target.host) === 6 ? 128 : 32}=PEER (or a wider prefix) if it should be split`);
      }
    }
    const used = new Set(config.routes.map((r) => r.via));
    for (const p of config.peers) {
      if (!used.has(p.name)) warnings.push(`--peer ${p.name} is used by no --route, so nothing goes through it: add --route CIDR=${p.name}`);
    }
  }
  if (config.accept !== undefined && config.allow.length === 0) {
    warnings.push(`--accept without --allow: any peer holding the key can make this relay connect anywhere but the built-in denials (loopback, link-local, metadata, this host); give --allow CIDR for the networks peers should reach`);
  }
  if (config.accept === undefined && (config.allow.length > 0 || config.deny.length > 0)) {
    warnings.push('--allow/--deny apply only to targets that peers ask for (with --accept); this relay has no --accept, so they do nothing here (-L targets are yours and are not checked)');
  }
  return warnings;
}

function hostPort(e: Endpoint): string {
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}
