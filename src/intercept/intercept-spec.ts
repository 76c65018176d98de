/**
 * What a relay intercepts, as configured: `--intercept CIDR[:PORT[-PORT]]` (repeatable),
 * `--intercept-mode`, `--intercept-iface`, `--intercept-listen`, `--instance`.
 *
 * An IPv6 CIDR has colons of its own, but its prefix length has none, so the port part is
 * whatever follows the first ':' after the '/': `fd00:7473:3::/64:22` is port 22 of that
 * /64. The bracketed form `[fd00:7473:3::/64]:22` reads the same.
 */
import { BadValue, parseCidr } from '../config/value-parsers.js';
import type { Endpoint } from '../config/relay-config.js';

export const INTERCEPT_MODES = ['redirect', 'tproxy'] as const;
export type InterceptMode = (typeof INTERCEPT_MODES)[number];

export interface InterceptRule {
  /** Canonical CIDR text, IPv4 or IPv6. */
  readonly cidr: string;
  readonly family: 4 | 6;
  /** Inclusive destination port range; undefined means every port. */
  readonly ports: { readonly first: number; readonly last: number } | undefined;
}

export interface InterceptConfig {
  readonly rules: readonly InterceptRule[];
  readonly mode: InterceptMode;
  /** Only connections arriving on this interface (nft `iifname`); undefined: any. */
  readonly iface: string | undefined;
  /** The listener the diverted connections reach. Dual-stack `[::]` by default. */
  readonly listen: Endpoint;
  /** Names the nftables table (`tcpsplit_<instance>`), its fwmark and route table. */
  readonly instance: string;
}

export const DEFAULT_INTERCEPT_LISTEN: Endpoint = { host: '::', port: 7080 };

/** Interface names: at most IFNAMSIZ - 1 bytes, and nothing that needs quoting in nft. */
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
/** Becomes part of an nft table name. */
const INSTANCE = /^[a-z0-9_]{1,32}$/;

/** `CIDR[:PORT[-PORT]]`; throws BadValue. */
export function parseInterceptRule(text: string): InterceptRule {
  let cidrText: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close === -1) throw new BadValue("'[' without ']'");
    cidrText = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== '' && !rest.startsWith(':')) throw new BadValue("expected ':PORT' after ']'");
    portText = rest === '' ? undefined : rest.slice(1);
  } else {
    const slash = text.indexOf('/');
    if (slash === -1) throw new BadValue('no prefix length: write the network as CIDR, e.g. 198.18.3.0/24 or 198.18.3.2/32');
    const colon = text.indexOf(':', slash);
    cidrText = colon === -1 ? text : text.slice(0, colon);
    portText = colon === -1 ? undefined : text.slice(colon + 1);
  }
  const cidr = parseCidr(cidrText);
  return { cidr: cidr.toString(), family: cidr.family, ports: portText === undefined ? undefined : parsePortRange(portText) };
}

function parsePortRange(text: string): { first: number; last: number } {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (m?.[1] === undefined) throw new BadValue(`'${text}' is not PORT or PORT-PORT`);
  const first = Number(m[1]);
  const last = m[2] === undefined ? first : Number(m[2]);
  if (first < 1 || last > 65535 || first > last) throw new BadValue(`port range '${text}' is not within 1..65535, low to high`);
  return { first, last };
}

export function parseInterceptMode(text: string): InterceptMode {
  const mode = INTERCEPT_MODES.find((m) => m === text);
  if (mode === undefined) throw new BadValue('unknown mode');
  return mode;
}

export function parseInterfaceName(text: string): string {
  if (!IFNAME.test(text)) throw new BadValue('not an interface name (1..15 of A-Z a-z 0-9 _ . -)');
  return text;
}

export function parseInstanceName(text: string): string {
  if (!INSTANCE.test(text)) throw new BadValue('not 1..32 of [a-z0-9_]');
  return text;
}

/** The default instance name: from the intercept listener's port, stable across restarts. */
export function defaultInstance(listen: Endpoint): string {
  return `p${listen.port}`;
}

/** `198.18.3.0/24:80-443` */
export function formatInterceptRule(rule: InterceptRule): string {
  if (rule.ports === undefined) return rule.cidr;
  const ports = rule.ports.first === rule.ports.last ? `${rule.ports.first}` : `${rule.ports.first}-${rule.ports.last}`;
  return `${rule.cidr}:${ports}`;
}
