/**
 * Link emulation settings: types, defaults, validation, the built-in profiles, and the
 * `--link NAME:key=value,...` syntax shared by flags and profile files.
 *
 * Keys (each may be prefixed `up.` or `down.` to set one direction only):
 *   delay=16.35ms   one-way delay
 *   rtt=32.7ms      shorthand: delay = rtt/2 in both directions
 *   jitter=1ms      uniform +-jitter added to each packet's delay (order kept)
 *   rate=100mbit    serialization rate (token bucket); 0 or unlimited = no cap
 *   burst=15kb      token-bucket depth (default 0: strict pacing)
 *   queue=1000      queue limit behind the rate cap, packets (1000 or 1000p) or bytes (256kb); tail drop
 *   loss=0.1%       independent random loss per packet
 */
import { LabConfigError } from '../errors.js';
import { LINK_NAMES, type LinkName } from './address-plan.js';
import { parseBytes, parseDurationMs, parseFraction, parseRateBitsPerSec } from './units.js';

export interface QueueLimit {
  readonly unit: 'packets' | 'bytes';
  readonly value: number;
}

/** One direction of one link. */
export interface DirectionConfig {
  readonly delayMs: number;
  readonly jitterMs: number;
  /** 0 means no rate cap. */
  readonly rateBitsPerSec: number;
  readonly burstBytes: number;
  readonly queueLimit: QueueLimit;
  /** 0..1 */
  readonly lossRate: number;
}

export interface LinkConfig {
  /** a -> b, away from the client. */
  readonly up: DirectionConfig;
  readonly down: DirectionConfig;
}

export type LabProfile = Readonly<Record<LinkName, LinkConfig>>;

export const DEFAULT_DIRECTION: DirectionConfig = {
  delayMs: 0, jitterMs: 0, rateBitsPerSec: 0, burstBytes: 0,
  queueLimit: { unit: 'packets', value: 1000 }, lossRate: 0,
};

export const LIMITS = {
  maxDelayMs: 10_000,
  minRateBitsPerSec: 8_000,
  maxRateBitsPerSec: 100e9,
  maxBurstBytes: 100e6,
  maxQueuePackets: 1_000_000,
  minQueueBytes: 1500,
  maxQueueBytes: 1e9,
} as const;

function symmetric(delayMs: number): LinkConfig {
  const d = { ...DEFAULT_DIRECTION, delayMs };
  return { up: d, down: d };
}

/** Built-in profiles. `paper`: the RTTs of the paper's section 4 (one-way = RTT/2). */
export const PROFILES = {
  paper: {
    'client-rc': symmetric(32.7 / 2),
    'rc-rs': symmetric(215 / 2),
    'rs-server': symmetric(26 / 2),
    internet: symmetric(273.7 / 2),
  },
  none: {
    'client-rc': symmetric(0), 'rc-rs': symmetric(0), 'rs-server': symmetric(0), internet: symmetric(0),
  },
} as const satisfies Readonly<Record<string, LabProfile>>;

export type ProfileName = keyof typeof PROFILES;

export function isProfileName(name: string): name is ProfileName {
  return Object.hasOwn(PROFILES, name);
}

export function isLinkName(name: string): name is LinkName {
  return (LINK_NAMES as readonly string[]).includes(name);
}

function checkRange(what: string, value: number, min: number, max: number, shown: string): void {
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new LabConfigError(`${what} ${shown} is out of range`);
  }
}

/** Throws LabConfigError unless every field is sane. `where` names the link/direction. */
export function verifyDirection(d: DirectionConfig, where: string): void {
  checkRange(`${where}: delay`, d.delayMs, 0, LIMITS.maxDelayMs, `${d.delayMs}ms (0..${LIMITS.maxDelayMs}ms)`);
  checkRange(`${where}: jitter`, d.jitterMs, 0, d.delayMs, `${d.jitterMs}ms (must be 0..delay, ${d.delayMs}ms)`);
  if (d.rateBitsPerSec !== 0) {
    checkRange(`${where}: rate`, d.rateBitsPerSec, LIMITS.minRateBitsPerSec, LIMITS.maxRateBitsPerSec,
      `${d.rateBitsPerSec}bit/s (0 = unlimited, or 8kbit..100gbit)`);
  }
  checkRange(`${where}: burst`, d.burstBytes, 0, LIMITS.maxBurstBytes, `${d.burstBytes}b (0..100mb)`);
  checkRange(`${where}: loss`, d.lossRate, 0, 1, `${d.lossRate * 100}% (0%..100%)`);
  const q = d.queueLimit;
  if (q.unit === 'packets') {
    if (!Number.isInteger(q.value)) throw new LabConfigError(`${where}: queue ${q.value} packets is not a whole number`);
    checkRange(`${where}: queue`, q.value, 1, LIMITS.maxQueuePackets, `${q.value} packets (1..${LIMITS.maxQueuePackets})`);
  } else {
    checkRange(`${where}: queue`, q.value, LIMITS.minQueueBytes, LIMITS.maxQueueBytes, `${q.value} bytes (1500b..1000mb)`);
  }
}

export function verifyProfile(profile: LabProfile): void {
  for (const name of LINK_NAMES) {
    verifyDirection(profile[name].up, `link ${name} up`);
    verifyDirection(profile[name].down, `link ${name} down`);
  }
}

function parseQueue(text: string): QueueLimit {
  const t = text.trim().toLowerCase();
  const packets = /^(\d+)\s*p?$/.exec(t);
  if (packets?.[1] !== undefined) return { unit: 'packets', value: Number(packets[1]) };
  return { unit: 'bytes', value: parseBytes(t) };
}

type Setter = (d: DirectionConfig, value: string) => DirectionConfig;

const SETTERS: Readonly<Record<string, Setter>> = {
  delay: (d, v) => ({ ...d, delayMs: parseDurationMs(v) }),
  rtt: (d, v) => ({ ...d, delayMs: parseDurationMs(v) / 2 }),
  jitter: (d, v) => ({ ...d, jitterMs: parseDurationMs(v) }),
  rate: (d, v) => ({ ...d, rateBitsPerSec: parseRateBitsPerSec(v) }),
  burst: (d, v) => ({ ...d, burstBytes: parseBytes(v) }),
  queue: (d, v) => ({ ...d, queueLimit: parseQueue(v) }),
  loss: (d, v) => ({ ...d, lossRate: parseFraction(v) }),
};

/** Applies one `key=value` (key optionally `up.`/`down.`-prefixed) to a link's config. */
export function applySetting(link: LinkConfig, key: string, value: string, where: string): LinkConfig {
  const m = /^(?:(up|down)\.)?([a-z]+)$/.exec(key.trim().toLowerCase());
  // hasOwn: 'constructor' or 'tostring' must not reach Object.prototype.
  const setter = m?.[2] === undefined || !Object.hasOwn(SETTERS, m[2]) ? undefined : SETTERS[m[2]];
  if (m === null || setter === undefined) {
    throw new LabConfigError(
      `${where}: unknown setting '${key}' (known: ${Object.keys(SETTERS).join(', ')}; prefix with up. or down. for one direction)`);
  }
  if (m[1] === 'up' && m[2] === 'rtt' || m[1] === 'down' && m[2] === 'rtt') {
    throw new LabConfigError(`${where}: rtt covers both directions; use up.delay / down.delay for one`);
  }
  try {
    return {
      up: m[1] === 'down' ? link.up : setter(link.up, value),
      down: m[1] === 'up' ? link.down : setter(link.down, value),
    };
  } catch (err) {
    if (err instanceof LabConfigError) throw new LabConfigError(`${where}: ${err.message}`);
    throw err;
  }
}

/** Applies `--link NAME:key=value,key=value` to a profile, returning a new, verified profile. */
export function applyLinkFlag(profile: LabProfile, flag: string): LabProfile {
  const colon = flag.indexOf(':');
  const name = (colon < 0 ? flag : flag.slice(0, colon)).trim();
  if (!isLinkName(name)) {
    throw new LabConfigError(`--link '${flag}': unknown link '${name}' (links: ${LINK_NAMES.join(', ')})`);
  }
  const body = colon < 0 ? '' : flag.slice(colon + 1).trim();
  if (body === '') throw new LabConfigError(`--link '${flag}': no settings (e.g. --link ${name}:delay=10ms,rate=100mbit)`);
  let link = profile[name];
  for (const item of body.split(',')) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new LabConfigError(`--link '${flag}': '${item}' is not key=value`);
    link = applySetting(link, item.slice(0, eq), item.slice(eq + 1), `link ${name}`);
  }
  const next = { ...profile, [name]: link };
  verifyProfile(next);
  return next;
}

/** Multiplies every delay and jitter by `factor` (e.g. 0.1 for fast tests). */
export function scaleDelays(profile: LabProfile, factor: number): LabProfile {
  if (!Number.isFinite(factor) || factor < 0 || factor > 100) {
    throw new LabConfigError(`delay scale ${factor} is out of range (0..100)`);
  }
  const scale = (d: DirectionConfig): DirectionConfig => ({ ...d, delayMs: d.delayMs * factor, jitterMs: d.jitterMs * factor });
  const out: Partial<Record<LinkName, LinkConfig>> = {};
  for (const name of LINK_NAMES) out[name] = { up: scale(profile[name].up), down: scale(profile[name].down) };
  const next = out as LabProfile;
  verifyProfile(next);
  return next;
}

/** A profile with only the named links' delays set (others zero), for tests. */
export function profileFromDelays(oneWayMs: Partial<Record<LinkName, number>>): LabProfile {
  const out: Partial<Record<LinkName, LinkConfig>> = {};
  for (const name of LINK_NAMES) out[name] = symmetric(oneWayMs[name] ?? 0);
  const next = out as LabProfile;
  verifyProfile(next);
  return next;
}
