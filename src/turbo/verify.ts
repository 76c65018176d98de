import type { Socket } from 'node:net';
import { socketFd, tcpInfo } from '../sys/index.js';

export interface TurboCheck {
  /** tcpi_snd_cwnd on the connection, segments. */
  readonly sndCwnd: number;
  readonly rcvWscale: number;
  readonly ok: boolean;
}

/**
 * Checks Turbo-Start on a fresh, connected peer leg: TCP_INFO's snd_cwnd must be at least
 * the configured initial window (issue 9: verify after applying). Undefined without an fd.
 */
export function checkTurbo(socket: Socket, initCwnd: number): TurboCheck | undefined {
  const fd = socketFd(socket);
  if (fd === undefined) return undefined;
  const info = tcpInfo(fd);
  return { sndCwnd: info.sndCwnd, rcvWscale: info.rcvWscale, ok: info.sndCwnd >= initCwnd };
}
