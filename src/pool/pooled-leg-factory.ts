import type { HeaderAuth } from '../protocol/header-auth.js';
import type { LegFactory, LegRequest, NextLeg } from '../relay/leg-factory.js';
import { encodeTargetFrame } from '../protocol/pool-frame-encoder.js';
import type { PoolSet } from './pool-set.js';

/**
 * A LegFactory that takes peer legs from the worker's pools (DESIGN.md concept 2: the
 * pool is one kind of factory). On a take, the TARGET frame and the client's bytes
 * received so far leave in one write on a connection that is already up: no handshake
 * and no round trip before the request leaves R_C. A miss (empty pool, or every pooled
 * connection stale) and direct legs go to `fallback`, which dials as before.
 */
export class PooledLegFactory implements LegFactory {
  readonly #pools: PoolSet;
  readonly #fallback: LegFactory;
  readonly #auth: HeaderAuth;

  constructor(pools: PoolSet, fallback: LegFactory, auth: HeaderAuth) {
    this.#pools = pools;
    this.#fallback = fallback;
    this.#auth = auth;
  }

  open(request: LegRequest): NextLeg {
    const { route, target, nonce } = request;
    if (route.kind !== 'peer') return this.#fallback.open(request);
    const taken = this.#pools.get(route.peer.name)?.take();
    if (taken === undefined) return this.#fallback.open(request);
    const { socket, authTag } = taken;
    const auth = this.#auth;
    return {
      socket,
      via: route.peer.name,
      route: 'peer',
      preamble: (early) => {
        socket.write(encodeTargetFrame(target, auth, authTag, Date.now(), early ?? undefined, nonce));
      },
    };
  }
}
