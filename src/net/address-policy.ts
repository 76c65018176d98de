/**
 * What a relay will connect to on a peer's behalf. A relay must never be an open proxy
 * into its own host or its cloud's metadata service, so some prefixes are denied
 * before any user rule is read.
 *
 * Decision: the longest matching prefix wins. At equal length a user rule beats a
 * built-in one and deny beats allow. If nothing matches, the address is allowed unless
 * the user gave any --allow rule, which turns the policy into an allow-list.
 *
 * So `--allow 127.0.0.1/32` lets a lab relay reach 127.0.0.1 (longer than the built-in
 * /8, and equal to the built-in own-address /32), and `--allow 127.0.0.0/8` is needed
 * to open all of loopback. Check the address actually connected to, after DNS
 * resolution: a name can resolve to anything.
 */
import { networkInterfaces } from 'node:os';
import { ConfigError } from '../errors.js';
import { Cidr } from './cidr.js';
import { parseIp, type IpAddress } from './ip-address.js';
import { RouteTable } from './route-table.js';

export interface AddressPolicyOptions {
  readonly allow?: readonly string[];
  readonly deny?: readonly string[];
  /** The relay's own addresses, denied as host prefixes. Default: `localAddresses()`. */
  readonly ownAddresses?: readonly string[];
}

export interface PolicyDecision {
  readonly allowed: boolean;
  /** The rule that decided, for logs: `deny 127.0.0.0/8 (built-in: loopback)`. */
  readonly rule: string;
}

/** Denied unless a user rule of equal or greater length says otherwise. */
export const BUILTIN_DENY: readonly { readonly cidr: string; readonly reason: string }[] = [
  { cidr: '127.0.0.0/8', reason: 'loopback' },
  { cidr: '::1/128', reason: 'loopback' },
  // Covers the metadata service of AWS, GCP, Azure and Oracle at 169.254.169.254.
  { cidr: '169.254.0.0/16', reason: 'link-local' },
  { cidr: 'fe80::/10', reason: 'link-local' },
  // Metadata services outside link-local: AWS over IPv6 (a ULA) and Alibaba Cloud.
  { cidr: 'fd00:ec2::254/128', reason: 'cloud metadata' },
  { cidr: '100.100.100.200/32', reason: 'cloud metadata' },
  // Linux treats a connect() to 0.0.0.0 or :: as a connect to this host.
  { cidr: '0.0.0.0/8', reason: 'unspecified' },
  { cidr: '::/128', reason: 'unspecified' },
  { cidr: '224.0.0.0/4', reason: 'multicast' },
  { cidr: 'ff00::/8', reason: 'multicast' },
  { cidr: '255.255.255.255/32', reason: 'broadcast' },
];

// Higher wins at equal prefix length.
const RANK = { builtin: 0, allow: 1, deny: 2 } as const;

interface Rule {
  readonly rank: number;
  readonly decision: PolicyDecision;
}

const NOT_AN_IP: PolicyDecision = Object.freeze({ allowed: false, rule: 'not an IP address' });

export class AddressPolicy {
  readonly #rules = new RouteTable<Rule>();
  readonly #fallback: PolicyDecision;

  /** Throws ConfigError for a rule that is not a CIDR. */
  constructor(options: AddressPolicyOptions = {}) {
    const allow = options.allow ?? [];
    for (const { cidr, reason } of BUILTIN_DENY) this.#add(Cidr.parse(cidr), 'builtin', `built-in: ${reason}`);
    for (const address of options.ownAddresses ?? localAddresses()) {
      const ip = parseIp(address);
      if (ip === undefined) throw new ConfigError(`own address '${address}' is not an IP address`);
      this.#add(Cidr.of(ip, ip.family === 4 ? 32 : 128), 'builtin', 'built-in: own address');
    }
    for (const text of allow) this.#add(parseRule('--allow', text), 'allow', '--allow');
    for (const text of options.deny ?? []) this.#add(parseRule('--deny', text), 'deny', '--deny');
    this.#fallback = Object.freeze(allow.length === 0
      ? { allowed: true, rule: 'default allow (no --allow rule given)' }
      : { allowed: false, rule: 'default deny (--allow rules make an allow-list)' });
  }

  check(ip: IpAddress | string): PolicyDecision {
    const addr = typeof ip === 'string' ? parseIp(ip) : ip;
    if (addr === undefined) return NOT_AN_IP;
    return this.#rules.lookup(addr)?.decision ?? this.#fallback;
  }

  #add(cidr: Cidr, kind: keyof typeof RANK, source: string): void {
    const rank = RANK[kind];
    const existing = this.#rules.get(cidr);
    if (existing !== undefined && existing.rank >= rank) return;
    const allowed = kind === 'allow';
    const rule = `${allowed ? 'allow' : 'deny'} ${cidr.toString()} (${source})`;
    this.#rules.add(cidr, { rank, decision: Object.freeze({ allowed, rule }) });
  }
}

function parseRule(option: string, text: string): Cidr {
  try {
    return Cidr.parse(text);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`${option} ${err.message}`, { cause: err });
    throw err;
  }
}

/** Every address on this host's interfaces, as reported now (a reload re-reads them). */
export function localAddresses(): string[] {
  const out: string[] = [];
  for (const infos of Object.values(networkInterfaces())) {
    for (const info of infos ?? []) out.push(info.address);
  }
  return out;
}
