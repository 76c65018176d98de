/**
 * How a pool opens its connections: injected, so the worker wiring decides whether a
 * pooled leg is a plain net.connect or an fd from the socket factory with Turbo-Start's
 * buffers and congestion control set before connect (the window scale is fixed by the SYN).
 */
import { connect, isIP, type Socket } from 'node:net';
import type { PeerSpec } from '../config/relay-config.js';
import { connectSocket, createConnectionFd, type SocketOptions } from '../sys/index.js';

/** Returns a connecting socket to the peer (or throws). Nagle and keepalive are the pool's to set. */
export type PoolOpener = (peer: PeerSpec) => Socket;

/** net.connect: the peer's endpoint may be a name. */
export const dialOpener: PoolOpener = (peer) =>
  connect({ host: peer.endpoint.host, port: peer.endpoint.port, allowHalfOpen: true, noDelay: true });

/**
 * The socket factory with `options` set before connect. A peer given by name falls back to
 * net.connect (the factory connects only to IP literals), without the options.
 */
export function socketFactoryOpener(options: SocketOptions): PoolOpener {
  return (peer) => {
    const family = isIP(peer.endpoint.host);
    if (family === 0) return dialOpener(peer);
    const fd = createConnectionFd({ ...options, noDelay: true, family: family === 4 ? 4 : 6 });
    return connectSocket(fd, peer.endpoint);
  };
}
