/**
 * The paper's Fig. 1 as arithmetic: when each handshake, target and request crosses
 * each link, for any link RTTs (docs/model.md derives and draws it). Times are in ms
 * from the client's SYN, as curl measures them; links are symmetric (one way = RTT/2)
 * and hosts take no time: the lab measures what the hosts add.
 *
 *   r1 = client-rc, r2 = rc-rs, r3 = rs-server, ri = internet, R = r1 + r2 + r3
 *
 * Nothing here assumes the paper's ordering of the RTTs (r2 >> r1 > r3): every step is
 * a max() of the events it waits for, so a server leg longer than the client leg, or a
 * client leg longer than the long haul, gives its own answer.
 */
import { DEFAULT_TURBO_TUNING } from '../turbo/turbo-options.js';

export interface PathRtts {
  readonly r1Ms: number;
  readonly r2Ms: number;
  readonly r3Ms: number;
  /** The direct "internet" link, for e2e. */
  readonly riMs: number;
}

/** A path without a split: one TCP connection end to end (e2e, nosplit). */
export interface DirectPath {
  readonly kind: 'direct';
  /** 'internet' = ri; 'path' = r1 + r2 + r3 (routed through rc and rs). */
  readonly via: 'internet' | 'path';
}

/**
 * A split through R_C and R_S, described by the three choices that set its timeline
 * (Fig. 1c, Fig. 2):
 * - rcLeg: when R_C opens its leg to R_S: at the client's SYN (early SYN), at accept()
 *   (after the client's handshake), or never, because a pooled leg is already open.
 * - rcTarget: when R_C knows the target (a forward listener or a transparent relay knows
 *   it at the SYN; a relay without early SYN acts on it only at accept()).
 * - rsTarget: how R_S learns the target: from the SYN of R_C's leg (a transparent R_S
 *   with early SYN: the SYN is addressed to the server) or from the first bytes on that
 *   leg (the header, or ssh's channel-open).
 * - dataWaitsForRs: the client's bytes may cross rc-rs only once R_S's leg is up and R_S
 *   has said so (ssh: data follows SSH_MSG_CHANNEL_OPEN_CONFIRMATION, sent once sshd's
 *   connect to the server completed).
 * - turboRcRs: the rc-rs leg skips slow start (Turbo-Start); first byte unchanged.
 * - wholePacketBytes: R_C forwards the response only in whole packets of up to this many
 *   bytes (ssh: a channel packet, 32 KB for a forward, carries one MAC, checked before
 *   any byte of it is forwarded). Its first packet crosses rc-rs in slow-start rounds
 *   from the initial window, since the session's window restarts after idle (RFC 5681
 *   §4.1, Linux's tcp_slow_start_after_idle): each round beyond the first adds r2 to
 *   the first byte. Only a download's size tells how big that first packet is, so
 *   predict() adds it; timeline() shows the first byte of a file that fits in one round.
 */
export interface SplitPath {
  readonly kind: 'split';
  readonly rcLeg: 'at-syn' | 'at-accept' | 'pooled';
  readonly rcTarget: 'at-syn' | 'at-accept';
  readonly rsTarget: 'syn' | 'first-bytes';
  readonly dataWaitsForRs: boolean;
  readonly turboRcRs: boolean;
  readonly wholePacketBytes?: number;
}

export type PathModel = DirectPath | SplitPath;

export type Host = 'client' | 'rc' | 'rs' | 'server';

/** One step of a timeline: at `atMs`, at `host`, `what` happens. */
export interface TimelineEvent {
  readonly atMs: number;
  readonly host: Host;
  readonly what: string;
}

export interface Timeline {
  /** curl's time_connect: the client's handshake is done. */
  readonly connectMs: number;
  /** curl's time_starttransfer: the first byte of the response reaches the client. */
  readonly ttfbMs: number;
  readonly events: readonly TimelineEvent[];
}

/** Fig. 1a: the request crosses once, the response comes straight back. */
export function idealTtfbMs(r: PathRtts): number {
  return r.r1Ms + r.r2Ms + r.r3Ms;
}

function directTimeline(rttMs: number, via: DirectPath['via']): Timeline {
  const events: TimelineEvent[] = [
    { atMs: 0, host: 'client', what: `SYN (over ${via === 'internet' ? 'the internet link' : 'rc and rs, routed'})` },
    { atMs: rttMs / 2, host: 'server', what: 'SYN-ACK' },
    { atMs: rttMs, host: 'client', what: 'connected; ACK + request' },
    { atMs: 1.5 * rttMs, host: 'server', what: 'request; first byte of the response' },
    { atMs: 2 * rttMs, host: 'client', what: 'first byte' },
  ];
  return { connectMs: rttMs, ttfbMs: 2 * rttMs, events };
}

function splitTimeline(r: PathRtts, p: SplitPath): Timeline {
  const { r1Ms: r1, r2Ms: r2, r3Ms: r3 } = r;
  if (p.rsTarget === 'syn' && p.rcLeg !== 'at-syn') {
    throw new RangeError('R_S can learn the target from the SYN of R_C\'s leg only when R_C sends that SYN at the client\'s SYN');
  }
  const events: TimelineEvent[] = [];
  const at = (atMs: number, host: Host, what: string): number => { events.push({ atMs, host, what }); return atMs; };
  at(0, 'client', 'SYN');
  const synAtRc = at(r1 / 2, 'rc', 'SYN from the client; SYN-ACK (the kernel answers)');
  const connect = at(r1, 'client', 'connected; ACK + request');
  const acceptAtRc = at(1.5 * r1, 'rc', 'ACK + request: accept()');
  const targetAtRc = p.rcTarget === 'at-syn' ? synAtRc : acceptAtRc;
  // R_C's leg: opened at the SYN or at accept(); a pooled leg is up before the client came.
  let rcLegUp = -Infinity;
  let rcLegSyn: number | undefined;
  if (p.rcLeg !== 'pooled') {
    rcLegSyn = at(p.rcLeg === 'at-syn' ? synAtRc : acceptAtRc, 'rc', `SYN to R_S (${p.rcLeg === 'at-syn' ? 'early SYN' : 'after accept()'})`);
    at(rcLegSyn + r2 / 2, 'rs', 'SYN from R_C; SYN-ACK');
    rcLegUp = at(rcLegSyn + r2, 'rc', 'leg to R_S connected');
  }
  // When R_S knows where to connect, and so starts its leg to the server.
  let rsLegSyn: number;
  if (p.rsTarget === 'syn' && rcLegSyn !== undefined) {
    rsLegSyn = at(rcLegSyn + r2 / 2, 'rs', 'target from the SYN itself (transparent, early SYN): SYN to the server');
  } else {
    const sent = at(Math.max(rcLegUp, targetAtRc), 'rc', p.rcLeg === 'pooled' ? 'target on the pooled leg' : 'target (header) on the new leg');
    rsLegSyn = at(sent + r2 / 2, 'rs', 'target from the first bytes: SYN to the server');
  }
  const rsLegUp = at(rsLegSyn + r3, 'rs', 'leg to the server connected');
  // The client's request crosses rc-rs once R_C has it and its leg is up (and, for ssh, R_S said go).
  let mayForward = Math.max(rcLegUp, acceptAtRc);
  if (p.dataWaitsForRs) mayForward = Math.max(mayForward, at(rsLegUp + r2 / 2, 'rc', 'R_S confirms its leg (ssh channel-open confirmation)'));
  const sentAtRc = at(mayForward, 'rc', 'request to R_S');
  const atRs = at(sentAtRc + r2 / 2, 'rs', 'request from R_C');
  const sentAtRs = at(Math.max(atRs, rsLegUp), 'rs', 'request to the server');
  const atServer = at(sentAtRs + r3 / 2, 'server', 'request; first byte of the response');
  const ttfb = at(atServer + (r1 + r2 + r3) / 2, 'client', 'first byte');
  events.sort((a, b) => a.atMs - b.atMs);
  return { connectMs: connect, ttfbMs: ttfb, events };
}

/** The Fig. 1-style timeline of one download's first byte. */
export function timeline(rtts: PathRtts, path: PathModel): Timeline {
  for (const [k, v] of Object.entries(rtts)) {
    if (!Number.isFinite(v) || (v as number) < 0) throw new RangeError(`${k} ${String(v)} is not an RTT`);
  }
  if (path.kind === 'direct') return directTimeline(path.via === 'internet' ? rtts.riMs : rtts.r1Ms + rtts.r2Ms + rtts.r3Ms, path.via);
  return splitTimeline(rtts, path);
}

// ---- download time: the first byte, then slow start on each leg ----

/** The sender's side of the transfer: what curl downloads and how TCP starts. */
export interface TransferParams {
  /** Ethernet MTU 1500 less IP, TCP and timestamp option: 1448 bytes. */
  readonly mssBytes: number;
  /** Linux's default, and the paper's hosts' (RFC 6928): 10 segments. */
  readonly initialWindowSegments: number;
  /** nginx's response header, which precedes the body. */
  readonly headerBytes: number;
  /** The rc-rs leg's initial window with Turbo-Start: the relays' --turbo-initcwnd (default 100). */
  readonly turboInitialWindowSegments: number;
}

export const DEFAULT_TRANSFER: TransferParams = {
  mssBytes: 1448, initialWindowSegments: 10, headerBytes: 240, turboInitialWindowSegments: DEFAULT_TURBO_TUNING.initCwnd,
};

/**
 * A leg for the download model: its RTT, its rate cap (0 = none), whether it starts
 * slowly, and its initial window (default TransferParams.initialWindowSegments).
 */
export interface Leg {
  readonly rttMs: number;
  readonly rateBitsPerSec: number;
  readonly slowStart: boolean;
  readonly initialWindowSegments?: number;
}

/**
 * Slow-start rounds to send `segments` from an initial window of `iw`, doubling each
 * round with no loss: the smallest k with iw * (2^k - 1) >= segments.
 */
export function slowStartRounds(segments: number, iw: number): number {
  if (segments <= 0) return 0;
  let k = 1;
  while (iw * (2 ** k - 1) < segments) k++;
  return k;
}

/**
 * Time from the first byte to the last: on each leg, one RTT per slow-start round after
 * the first, and the serialisation at its rate. The legs run as a pipeline, so the
 * slowest leg sets the time (a split's gain: each leg ramps up on its own RTT). A leg
 * with Turbo-Start slow-starts from its larger initial window (100 segments: 145 KB in
 * the first round, 1 MB in four). The receive window and its
 * auto-tuning, delayed ACKs, HyStart and BBR's pacing are left out: docs/model.md says
 * how far that goes.
 */
export function transferAfterFirstByteMs(sizeBytes: number, legs: readonly Leg[], t: TransferParams = DEFAULT_TRANSFER): number {
  const bytes = sizeBytes + t.headerBytes;
  const segments = Math.ceil(bytes / t.mssBytes);
  let worst = 0;
  for (const leg of legs) {
    const rounds = leg.slowStart ? slowStartRounds(segments, leg.initialWindowSegments ?? t.initialWindowSegments) : 1;
    const serialise = leg.rateBitsPerSec > 0 ? (bytes * 8 * 1000) / leg.rateBitsPerSec : 0;
    worst = Math.max(worst, (rounds - 1) * leg.rttMs + serialise);
  }
  return worst;
}

/** Rate caps (bits/s, 0 = none) of the four links, for the download model. */
export interface PathRates {
  readonly clientRc: number;
  readonly rcRs: number;
  readonly rsServer: number;
  readonly internet: number;
}

export const NO_RATE_CAPS: PathRates = { clientRc: 0, rcRs: 0, rsServer: 0, internet: 0 };

export interface Prediction {
  readonly connectMs: number;
  readonly ttfbMs: number;
  readonly totalMs: number;
}

/** The model's first byte and download time for one configuration and file size. */
export function predict(rtts: PathRtts, path: PathModel, sizeBytes: number, rates: PathRates = NO_RATE_CAPS, t: TransferParams = DEFAULT_TRANSFER): Prediction {
  const tl = timeline(rtts, path);
  const ttfbMs = tl.ttfbMs + firstPacketHoldMs(rtts, path, sizeBytes, t);
  let legs: Leg[];
  if (path.kind === 'direct') {
    legs = path.via === 'internet'
      ? [{ rttMs: rtts.riMs, rateBitsPerSec: rates.internet, slowStart: true }]
      : [{ rttMs: rtts.r1Ms + rtts.r2Ms + rtts.r3Ms, rateBitsPerSec: minRate([rates.clientRc, rates.rcRs, rates.rsServer]), slowStart: true }];
  } else {
    legs = [
      { rttMs: rtts.r1Ms, rateBitsPerSec: rates.clientRc, slowStart: true },
      { rttMs: rtts.r2Ms, rateBitsPerSec: rates.rcRs, slowStart: true, ...(path.turboRcRs ? { initialWindowSegments: t.turboInitialWindowSegments } : {}) },
      { rttMs: rtts.r3Ms, rateBitsPerSec: rates.rsServer, slowStart: true },
    ];
  }
  // The held first packet (ssh) is part of rc-rs's own slow-start rounds: count them once.
  return { connectMs: tl.connectMs, ttfbMs, totalMs: Math.max(ttfbMs, tl.ttfbMs + transferAfterFirstByteMs(sizeBytes, legs, t)) };
}

/** The extra rc-rs rounds before R_C holds the response's first whole packet (SplitPath.wholePacketBytes). */
export function firstPacketHoldMs(rtts: PathRtts, path: PathModel, sizeBytes: number, t: TransferParams = DEFAULT_TRANSFER): number {
  if (path.kind !== 'split' || path.wholePacketBytes === undefined || path.turboRcRs) return 0;
  const first = Math.min(sizeBytes + t.headerBytes, path.wholePacketBytes);
  return (slowStartRounds(Math.ceil(first / t.mssBytes), t.initialWindowSegments) - 1) * rtts.r2Ms;
}

function minRate(rates: readonly number[]): number {
  const capped = rates.filter((r) => r > 0);
  return capped.length === 0 ? 0 : Math.min(...capped);
}

/** A timeline as text, one event a line, for docs and the report. */
export function formatTimeline(tl: Timeline): string {
  return tl.events.map((e) => `${e.atMs.toFixed(2).padStart(9)} ms  ${e.host.padEnd(6)}  ${e.what}`).join('\n');
}
