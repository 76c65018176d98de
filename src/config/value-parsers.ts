/**
 * Parsers for one option value each. They throw BadValue with the reason only; the
 * caller knows the option name and the expected form and builds the ConfigError.
 */
import { isValidDnsName } from '../protocol/target-address.js';
import { isIPv4 } from 'node:net';
import { Cidr } from '../net/cidr.js';
import { parseIp } from '../net/ip-address.js';
import { DIRECT, type Endpoint, type ForwardSpec, type PeerSpec, type PoolPeerSpec, type RouteSpec } from './relay-config.js';

export class BadValue extends Error {}

/** setTimeout() fires at once for anything larger, so a bigger timeout would be a bug. */
export const MAX_DURATION_MS = 2 ** 31 - 1;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/**
 * `500ms`, `10s`, `1.5s`, `5m`, `1h`, or `0`. A unit is required: `timeout: 30` in a
 * YAML file could mean 30 s or 30 ms, and a guess would be off by a thousand.
 */
export function parseDuration(text: string, { allowZero }: { allowZero: boolean }): number {
  if (/^\d+(?:\.\d+)?$/.test(text) && Number(text) !== 0) throw new BadValue(`no unit: did you mean ${text}s or ${text}ms?`);
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text);
  if (m?.[1] === undefined) throw new BadValue('not a duration');
  const ms = Number(m[1]) * UNIT_MS[(m[2] ?? 'ms') as keyof typeof UNIT_MS];
  if (!Number.isInteger(ms)) throw new BadValue('not a whole number of milliseconds');
  if (ms === 0 && !allowZero) throw new BadValue('must be more than 0');
  if (ms > MAX_DURATION_MS) throw new BadValue(`longer than ${MAX_DURATION_MS}ms`);
  return ms;
}

/** Port 0 (the kernel picks one) only makes sense for a listener. */
export function parsePort(text: string, { listener }: { listener: boolean }): number {
  const min = listener ? 0 : 1;
  if (!/^\d{1,5}$/.test(text) || Number(text) < min || Number(text) > 65535) {
    throw new BadValue(`port '${text}' is not in ${min}..65535`);
  }
  return Number(text);
}

/** `[bind:]port`. */
export function parseListen(text: string, defaultBind: string): Endpoint {
  const parts = splitHostPort(text);
  if (parts.length === 1) return { host: defaultBind, port: parsePort(part(parts, 0), { listener: true }) };
  if (parts.length === 2) return { host: parseHost(part(parts, 0)), port: parsePort(part(parts, 1), { listener: true }) };
  throw new BadValue('wrong number of fields');
}

/** `HOST:PORT`. */
export function parseEndpoint(text: string): Endpoint {
  const parts = splitHostPort(text);
  if (parts.length !== 2) throw new BadValue('wrong number of fields');
  return { host: parseHost(part(parts, 0)), port: parsePort(part(parts, 1), { listener: false }) };
}

/** `[bind:]port:host:hostport`, like `ssh -L`. */
export function parseForward(text: string, defaultBind: string): ForwardSpec {
  const parts = splitHostPort(text);
  if (parts.length !== 3 && parts.length !== 4) throw new BadValue('wrong number of fields');
  const at = parts.length - 3;
  const bind = at === 0 ? defaultBind : parseHost(part(parts, 0));
  return {
    listen: { host: bind, port: parsePort(part(parts, at), { listener: true }) },
    target: { host: parseHost(part(parts, at + 1)), port: parsePort(part(parts, at + 2), { listener: false }) },
  };
}

const PEER_NAME = /^[a-z0-9_-]{1,64}$/;

/** `NAME=HOST:PORT`. */
export function parsePeer(text: string): PeerSpec {
  const eq = text.indexOf('=');
  if (eq === -1) throw new BadValue("no '='");
  const name = text.slice(0, eq);
  if (!PEER_NAME.test(name)) throw new BadValue(`peer name '${name}' is not 1..64 of [a-z0-9_-]`);
  if (name === DIRECT) throw new BadValue(`'${DIRECT}' is reserved`);
  return { name, endpoint: parseEndpoint(text.slice(eq + 1)) };
}

/**
 * `NAME=SETTING,...` with settings `low:N`, `high:N`, `max-idle:DURATION`, `pool:on|off`:
 * one peer's pool, differing from the relay-wide --pool* options. Whether NAME is a
 * defined peer, and low <= high once merged with the defaults, is checked with the whole config.
 */
export function parsePoolPeer(text: string): PoolPeerSpec {
  const eq = text.indexOf('=');
  if (eq === -1) throw new BadValue("no '='");
  const name = text.slice(0, eq);
  if (!PEER_NAME.test(name)) throw new BadValue(`peer name '${name}' is not 1..64 of [a-z0-9_-]`);
  const spec: { -readonly [K in keyof PoolPeerSpec]: PoolPeerSpec[K] } = { name };
  const settings = text.slice(eq + 1).split(',').filter((x) => x !== '');
  if (settings.length === 0) throw new BadValue('no settings after the name');
  for (const setting of settings) {
    const colon = setting.indexOf(':');
    const key = colon === -1 ? setting : setting.slice(0, colon);
    const value = colon === -1 ? '' : setting.slice(colon + 1);
    const whole = (min: number, max: number): number => {
      if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) throw new BadValue(`${key}:${value}: not a whole number from ${min} to ${max}`);
      return Number(value);
    };
    if (key === 'low') spec.low = whole(0, 1024);
    else if (key === 'high') spec.high = whole(1, 1024);
    else if (key === 'max-idle') spec.maxIdleMs = parseDuration(value, { allowZero: false });
    else if (key === 'pool') {
      if (value !== 'on' && value !== 'off') throw new BadValue(`pool:${value}: neither on nor off`);
      spec.pool = value === 'on';
    } else throw new BadValue(`unknown setting '${key}' (low, high, max-idle, pool)`);
  }
  return spec;
}

/** `CIDR=NAME` or `CIDR=direct`; whether NAME is a defined peer is checked with the whole config. */
export function parseRoute(text: string): RouteSpec {
  const eq = text.lastIndexOf('=');
  if (eq === -1) throw new BadValue("no '='");
  const via = text.slice(eq + 1);
  if (via !== DIRECT && !PEER_NAME.test(via)) throw new BadValue(`'${via}' is not a peer name or '${DIRECT}'`);
  return { cidr: parseCidr(text.slice(0, eq)).toString(), via };
}

/**
 * `ADDRESS/LENGTH`, one per value. A bare address is refused, not taken as /32 or /128:
 * `--allow 10.20.0.0` almost surely means a network, and as a host prefix it would
 * silently allow (or deny) one address.
 */
export function parseCidr(text: string): Cidr {
  if (/[,;\s]/.test(text.trim())) throw new BadValue('one CIDR per value: repeat the option (or use a YAML list) for several');
  let cidr: Cidr;
  try {
    cidr = Cidr.parse(text);
  } catch (err) {
    throw new BadValue(err instanceof Error ? err.message : String(err), { cause: err });
  }
  if (!text.includes('/')) {
    throw new BadValue(`no prefix length: write ${cidr.toString()} for this one address, or the network's length (e.g. /16)`);
  }
  return cidr;
}

/**
 * Splits on ':' outside brackets. A bracketed field must be an IPv6 literal and is
 * returned without its brackets; it is marked so that parseHost accepts it.
 */
function splitHostPort(text: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    if (text[i] === '[') {
      const close = text.indexOf(']', i);
      if (close === -1) throw new BadValue("'[' without ']'");
      const inner = text.slice(i + 1, close);
      if (!inner.includes(':') || parseIp(inner) === undefined) throw new BadValue(`'[${inner}]' is not an IPv6 address`);
      fields.push(`[${inner}]`);
      i = close + 1;
      if (i < text.length && text[i] !== ':') throw new BadValue("expected ':' after ']'");
    } else {
      const colon = text.indexOf(':', i);
      const end = colon === -1 ? text.length : colon;
      fields.push(text.slice(i, end));
      i = end;
    }
    if (i >= text.length) return fields;
    i++; // the ':'
  }
}

function part(parts: readonly string[], index: number): string {
  return parts[index] ?? '';
}

const LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/**
 * An IPv4 literal, a bracketed IPv6 literal, or a DNS name. Names whose last label is
 * numeric (`127.1`, `10.0.0.256`) are refused: they are not DNS names, and getaddrinfo
 * would turn some of them into addresses nobody meant.
 */
function parseHost(field: string): string {
  if (field.startsWith('[')) return field.slice(1, -1);
  if (field === '') throw new BadValue('empty host');
  if (isIPv4(field)) return field;
  const name = field.endsWith('.') ? field.slice(0, -1) : field;
  const labels = name.split('.');
  const last = labels[labels.length - 1] ?? '';
  // isValidDnsName is the wire format's rule (the trailing dot counts toward 253 bytes):
  // a name the relay header cannot carry is refused here, not at connect time.
  if (!isValidDnsName(field) || !labels.every((l) => LABEL.test(l)) || /^(?:\d+|0x[0-9a-f]*)$/i.test(last)) {
    throw new BadValue(`'${field}' is not an IPv4 address, [IPv6] address or host name`);
  }
  return field;
}
