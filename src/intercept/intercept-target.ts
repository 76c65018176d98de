/**
 * The target source for intercepted connections (DESIGN.md concept 1): where the
 * client was going, by mode, read through the sys layer. Known at accept, before any
 * byte, so early SYN can use it later.
 */
import type { Socket } from 'node:net';
import type { Endpoint } from '../config/relay-config.js';
import { redirectedDestination, transparentDestination, type SocketOptions } from '../sys/index.js';
import type { Destination, TargetSource } from '../relay/target-source.js';
import type { InterceptConfig, InterceptMode } from './intercept-spec.js';

export function interceptTarget(socket: Socket, mode: InterceptMode): Endpoint {
  return mode === 'tproxy' ? transparentDestination(socket) : redirectedDestination(socket);
}

/**
 * The intercept listener's socket options: TPROXY delivers only to a transparent
 * listener (IP_TRANSPARENT / IPV6_TRANSPARENT, set before bind); a `[::]` listener takes
 * both families.
 */
export function interceptSocketOptions(config: InterceptConfig): SocketOptions {
  return config.mode === 'tproxy' ? { transparent: true, v6Only: false } : { v6Only: false };
}

/**
 * The intercept listener's target source: known at the SYN (from the kernel, before any
 * byte). The target is the client's own choice, not this relay's config, so the address
 * policy applies to it as to a peer's (`requestedByPeer`).
 */
export class InterceptTargetSource implements TargetSource {
  readonly kind = 'intercept';
  readonly knownAtSyn = true;
  readonly #mode: InterceptMode;

  constructor(mode: InterceptMode) {
    this.#mode = mode;
  }

  /** Throws OriginalDestinationError when the kernel cannot say. */
  targetOf(socket: Socket): Destination {
    return { target: interceptTarget(socket, this.#mode), requestedByPeer: true };
  }
}
