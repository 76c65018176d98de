/**
 * Turbo-Start (paper §2, improvement 4): relay-to-relay legs skip slow start. Inside one
 * cloud there is no congestion to probe for, so the legs between relays get a large
 * initial congestion window and receive window (per-peer routes: route-tuning.ts) and
 * large socket buffers, set before connect so the window scale in the SYN fits them.
 * Never applied to a leg that faces the Internet: "we do not change the CWND used on any
 * Internet-facing flows".
 */
import type { SocketOptions } from '../sys/index.js';
import { ConfigError } from '../errors.js';

export interface TurboTuning {
  /** Route initcwnd toward each peer, segments (Linux's default is 10). */
  readonly initCwnd: number;
  /** Route initrwnd toward each peer, segments: the receive window advertised in the handshake. */
  readonly initRwnd: number;
  /**
   * SO_SNDBUF / SO_RCVBUF on relay legs, set before connect (and on the --accept listener
   * before listen, so accepted legs inherit it); 0 leaves the kernel's autotuning alone.
   * Setting a buffer turns autotuning off for that socket, and the kernel caps it at
   * net.core.{r,w}mem_max: it only helps when it is larger than autotuning would grow to.
   */
  readonly socketBufferBytes: number;
  /** TCP_CONGESTION for relay legs, e.g. 'bbr'; unset keeps the system default. */
  readonly congestion?: string;
}

export const DEFAULT_TURBO_TUNING: TurboTuning = Object.freeze({
  initCwnd: 100,
  initRwnd: 100,
  socketBufferBytes: 4 * 1024 * 1024,
});

export function verifyTurboTuning(t: TurboTuning): TurboTuning {
  for (const name of ['initCwnd', 'initRwnd'] as const) {
    const v = t[name];
    // The kernel keeps both as u32 route metrics; above a few thousand segments it is a typo.
    if (!Number.isInteger(v) || v < 1 || v > 65535) throw new ConfigError(`turbo ${name} must be an integer in 1..65535, not ${v}`);
  }
  if (!Number.isInteger(t.socketBufferBytes) || t.socketBufferBytes < 0 || t.socketBufferBytes > 0x3fff_ffff) {
    throw new ConfigError(`turbo socketBufferBytes must be an integer in 0..1073741823, not ${t.socketBufferBytes}`);
  }
  if (t.congestion !== undefined && !/^[a-z0-9_]{1,15}$/.test(t.congestion)) {
    throw new ConfigError(`turbo congestion '${t.congestion}' is not a congestion-control name`);
  }
  return t;
}

/** Options for the socket factory on a relay-to-relay leg (pool opener, peer dial). */
export function relayLegSocketOptions(t: TurboTuning): SocketOptions {
  return {
    noDelay: true,
    ...(t.socketBufferBytes > 0 ? { receiveBufferBytes: t.socketBufferBytes, sendBufferBytes: t.socketBufferBytes } : {}),
    ...(t.congestion === undefined ? {} : { congestion: t.congestion }),
  };
}

/** Options for the --accept listener: the receiving relay's buffers are part of Turbo-Start. */
export function peerListenerSocketOptions(t: TurboTuning): SocketOptions {
  return t.socketBufferBytes > 0 ? { receiveBufferBytes: t.socketBufferBytes, sendBufferBytes: t.socketBufferBytes } : {};
}
