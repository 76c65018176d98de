import type { HeaderAuth } from '../protocol/header-auth.js';
import type { LegFactory, LegRequest, NextLeg } from '../relay/leg-factory.js';
import type { UpstreamRetry } from '../relay/split-connection.js';
import { encodeTargetFrame } from '../protocol/pool-frame-encoder.js';
import { FirstUse } from './first-use.js';
import type { PoolSet } from './pool-set.js';

/**
 * A LegFactory that takes peer legs from the worker's pools (DESIGN.md concept 2: the
 * pool is one kind of factory). On a take, the TARGET frame and the client's bytes
 * received so far leave in one write on a connection that is already up: no handshake
 * and no round trip before the request leaves R_C. A miss (empty pool, or every pooled
 * connection stale) and direct legs go to `fallback`, which dials as before.
 *
 * A taken leg comes with its retry (first-use.ts): found dead before the peer
 * acknowledged anything written on it, it is replaced by a leg from `fallback`, which
 * carries the same client bytes after a v1 header.
 */
export class PooledLegFactory implements LegFactory {
  readonly #pools: PoolSet;
  readonly #fallback: LegFactory;
  readonly #auth: HeaderAuth;
  readonly #onRetry: (peer: string) => void;

  constructor(pools: PoolSet, fallback: LegFactory, auth: HeaderAuth, onRetry: (peer: string) => void = () => undefined) {
    this.#pools = pools;
    this.#fallback = fallback;
    this.#auth = auth;
    this.#onRetry = onRetry;
  }

  get pools(): PoolSet {
    return this.#pools;
  }

  open(request: LegRequest): NextLeg {
    const { route, target, nonce } = request;
    if (route.kind !== 'peer') return this.#fallback.open(request);
    const taken = this.#pools.get(route.peer.name)?.take();
    if (taken === undefined) return this.#fallback.open(request);
    const { socket, authTag } = taken;
    const auth = this.#auth;
    let firstUse: FirstUse | undefined;
    const retry: UpstreamRetry = {
      unacknowledged: () => firstUse?.unacknowledged() ?? false,
      watch: (onVerdict) => { firstUse?.watch(onVerdict); },
      reopen: () => {
        this.#onRetry(route.peer.name);
        return this.#fallback.open(request);
      },
      dispose: () => { firstUse?.dispose(); },
    };
    return {
      socket,
      via: route.peer.name,
      route: 'peer',
      preamble: (early) => {
        firstUse = new FirstUse(socket);
        socket.write(encodeTargetFrame(target, auth, authTag, Date.now(), early ?? undefined, nonce));
      },
      retry,
    };
  }
}
