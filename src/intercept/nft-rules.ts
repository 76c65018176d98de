/**
 * The nftables ruleset of one relay instance, as text for `nft -f -` (pure: no I/O).
 *
 * Everything lives in one table of our own, `inet tcpsplit_<instance>`, so both families
 * share it and removing it removes everything: no other table is read, changed or
 * flushed. A script starts with `table X` + `delete table X`, which makes the whole
 * file one transaction that replaces whatever an earlier (crashed) run of the same
 * instance left, and succeeds whether or not the table existed.
 *
 * Only the prerouting hook is used: it sees packets that arrive on an interface, which
 * is where connections routed through this host come from. The relay's own
 * connections start in the output hook and never pass here, so the relay cannot
 * intercept itself (no SO_MARK or skuid exclusion is needed; one would be for an
 * output-hook rule, which we do not offer). `fib daddr type local return` leaves alone
 * whatever is addressed to this host itself: peers reaching --accept, replies to the
 * relay's own legs, and anything aimed at the host's own services.
 */
import type { InterceptConfig, InterceptRule } from './intercept-spec.js';

export const TABLE_PREFIX = 'tcpsplit_';

export function tableName(instance: string): string {
  return `${TABLE_PREFIX}${instance}`;
}

/**
 * The fwmark and routing table TPROXY needs, derived from the instance name so that a
 * restart after a crash finds (and removes) exactly what the last run added. In the
 * 0x7473xxxx range ("ts"), away from the small numbers people pick by hand.
 */
export function tproxyIds(instance: string): { mark: number; table: number } {
  let h = 0x811c9dc5;
  for (const c of Buffer.from(instance)) h = Math.imul(h ^ c, 0x01000193) >>> 0;
  const id = 0x7473_0000 + (h & 0xffff);
  return { mark: id, table: id };
}

export interface RenderOptions {
  /** The port diverted connections go to (the intercept listener's). */
  readonly port: number;
  /**
   * False while draining: no new connection is diverted. In tproxy mode the rule that
   * delivers packets of already-accepted flows to their transparent sockets stays (they
   * still carry the server's address); in redirect mode conntrack carries them anyway.
   */
  readonly newFlows: boolean;
}

/** The `nft -f -` script that (re)creates the instance's table. */
export function renderRuleset(config: InterceptConfig, options: RenderOptions): string {
  const table = tableName(config.instance);
  const lines = [`table inet ${table}`, `delete table inet ${table}`, `table inet ${table} {`];
  const iif = config.iface === undefined ? '' : `iifname "${config.iface}" `;
  if (config.mode === 'redirect') {
    lines.push('  chain prerouting {', '    type nat hook prerouting priority dstnat; policy accept;');
    if (options.newFlows) {
      lines.push('    fib daddr type local return');
      for (const rule of config.rules) lines.push(`    ${iif}${match(rule)} redirect to :${options.port}`);
    }
  } else {
    const { mark } = tproxyIds(config.instance);
    const m = `0x${mark.toString(16)}`;
    lines.push('  chain prerouting {', '    type filter hook prerouting priority mangle; policy accept;');
    // Packets of flows already accepted by a transparent socket: mark them so the fwmark
    // rule routes them to the local table (they carry the server's address).
    lines.push(`    meta l4proto tcp socket transparent 1 meta mark set ${m} accept`);
    if (options.newFlows) {
      lines.push('    fib daddr type local return');
      for (const rule of config.rules) {
        lines.push(`    ${iif}${match(rule)} tproxy ${rule.family === 4 ? 'ip' : 'ip6'} to :${options.port} meta mark set ${m} accept`);
      }
    }
  }
  lines.push('  }', '}', '');
  return lines.join('\n');
}

/** The script that removes the table (whether or not it exists). */
export function renderRemoval(instance: string): string {
  const table = tableName(instance);
  return `table inet ${table}\ndelete table inet ${table}\n`;
}

function match(rule: InterceptRule): string {
  const addr = `${rule.family === 4 ? 'ip' : 'ip6'} daddr ${rule.cidr}`;
  if (rule.ports === undefined) return `meta l4proto tcp ${addr}`;
  const ports = rule.ports.first === rule.ports.last ? `${rule.ports.first}` : `${rule.ports.first}-${rule.ports.last}`;
  return `${addr} tcp dport ${ports}`;
}
