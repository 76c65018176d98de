/**
 * TCP_INFO of one leg to each peer, read when asked (a scrape, the view): the RTT, the
 * congestion window and the retransmits a person watching a relay pair wants to see.
 */
import type { Socket } from 'node:net';
import { socketFd, tcpInfo } from '../sys/index.js';

export interface PeerLegSample {
  readonly peer: string;
  readonly rttMs: number;
  readonly cwnd: number;
  readonly retransmits: number;
}

/** A sample per peer that `legOf` finds a leg for (undefined: none in this worker now). */
export function samplePeerLegs(peers: readonly string[], legOf: (peer: string) => Socket | undefined): PeerLegSample[] {
  return peers.flatMap((peer) => {
    const info = legInfo(legOf(peer));
    return info === undefined ? [] : [{ peer, ...info }];
  });
}

/** RTT, cwnd and retransmits of a leg; undefined when there is no leg or the call fails. */
function legInfo(socket: Socket | undefined): Omit<PeerLegSample, 'peer'> | undefined {
  const fd = socket === undefined ? undefined : socketFd(socket);
  if (fd === undefined) return undefined;
  try {
    const info = tcpInfo(fd);
    return { rttMs: info.rttUs / 1000, cwnd: info.sndCwnd, retransmits: info.totalRetrans };
  } catch {
    return undefined; // closed under us: no sample this time
  }
}
