import type { Socket } from 'node:net';
import type { Endpoint } from '../config/relay-config.js';
import type { HeaderAuth } from '../protocol/header-auth.js';
import type { ReplayCheck } from '../protocol/replay-guard.js';
import { acceptHeader } from './accept-header.js';

/**
 * Where an accepted connection is going, and who asked. Sources (DESIGN.md, concept 1):
 * - a forward listener's config (-L): known at the SYN;
 * - a relay header (--accept): known only from the first bytes;
 * - SO_ORIGINAL_DST (REDIRECT) and getsockname() (TPROXY), both known at the SYN:
 *   InterceptTargetSource (src/intercept/intercept-target.ts), reading the accepted
 *   socket through src/sys.
 * A source known at the SYN lets early SYN open the next leg before accept().
 */
export interface Destination {
  readonly target: Endpoint;
  /**
   * The target came from a peer (a header) or an intercepted client, not from our own
   * config: the address policy applies to it.
   */
  readonly requestedByPeer: boolean;
  /** The header's nonce, carried on to the next relay (loop cut-off). */
  readonly nonce?: Buffer;
}

export type TargetSourceKind = 'forward' | 'header' | 'intercept';

export interface TargetSource {
  readonly kind: TargetSourceKind;
  /** True when the target is known before any byte is read (so at the SYN, too). */
  readonly knownAtSyn: boolean;
  /**
   * The accepted socket's destination: at once, or once the socket's first bytes are read
   * (a rejection carries the error that refuses the connection). Bytes after a header are
   * left on the socket, which is left paused.
   */
  targetOf(socket: Socket): Destination | Promise<Destination>;
}

/** A forward listener (-L LISTEN=TARGET): every connection goes to the configured target. */
export class ForwardTargetSource implements TargetSource {
  readonly kind = 'forward';
  readonly knownAtSyn = true;
  readonly #destination: Destination;

  constructor(target: Endpoint) {
    this.#destination = Object.freeze({ target, requestedByPeer: false });
  }

  targetOf(): Destination {
    return this.#destination;
  }
}

export interface HeaderSourceOptions {
  readonly auth: HeaderAuth;
  readonly replay: ReplayCheck;
  readonly headerTimeoutMs: number;
}

/** The peer listener (--accept): the target is in the authenticated relay header. */
export class HeaderTargetSource implements TargetSource {
  readonly kind = 'header';
  readonly knownAtSyn = false;
  readonly #options: HeaderSourceOptions;

  constructor(options: HeaderSourceOptions) {
    this.#options = options;
  }

  /** Never settles if the socket goes away first (its connection has failed already). */
  targetOf(socket: Socket): Promise<Destination> {
    const { auth, replay, headerTimeoutMs } = this.#options;
    return new Promise((resolve, reject) => {
      acceptHeader(socket, auth, replay, headerTimeoutMs, (err, header) => {
        if (err !== undefined) reject(err);
        else if (header !== undefined) resolve({ target: header.target, requestedByPeer: true, nonce: header.nonce });
      });
    });
  }
}
