/**
 * Opening the next leg of a split connection:
 *   route (router.ts) -> a LegFactory opens a socket (direct, or to a peer relay)
 *   -> the connection writes the leg's preamble once it is connected and paired.
 * Later ways to get the socket slot in as other factories with the same result, a NextLeg:
 * a pool of pre-established connections to a peer, an early leg opened at the SYN, legs
 * with socket options set before connect (buffers, congestion control, marks: the
 * socket factory in src/sys). A factory may wrap another (a pool falls back to dialling).
 */
import { connect, isIP, type LookupFunction, type Socket } from 'node:net';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import type { Endpoint, PeerSpec } from '../config/relay-config.js';
import type { Route, Router } from './router.js';
import type { Preamble, SplitConnection, UpstreamRetry } from './split-connection.js';
import type { Destination } from './target-source.js';
import type { AddressPolicy } from '../net/address-policy.js';
import type { HeaderAuth } from '../protocol/header-auth.js';
import { encodeHeader } from '../protocol/header-encoder.js';
import { PolicyDeniedError, ResolveError } from '../errors.js';
import { connectSocket, createConnectionFd, type SocketOptions } from '../sys/index.js';

export interface LegOptions {
  readonly keepaliveMs: number;
  /**
   * Options set before connect on legs to a peer (Turbo-Start's buffers: the window
   * scale is fixed by the SYN). Never used for direct, Internet-facing legs.
   */
  readonly peerSocketOptions?: SocketOptions;
}

/** Checks the policy on every address the name resolves to: the connect uses only allowed ones. */
function policyLookup(policy: AddressPolicy, onDenied: (rule: string) => void): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err !== null) {
        callback(new ResolveError(`cannot resolve '${hostname}': ${err.message}`, { cause: err }), '', 0);
        return;
      }
      let lastRule = 'no addresses';
      const allowed = addresses.filter((a) => {
        const decision = policy.check(a.address);
        if (!decision.allowed) lastRule = decision.rule;
        return decision.allowed;
      });
      const first = allowed[0];
      if (first === undefined) {
        onDenied(lastRule);
        callback(new PolicyDeniedError(`'${hostname}' resolves only to denied addresses (${lastRule})`), '', 0);
        return;
      }
      if (options.all === true) callback(null, allowed);
      else callback(null, first.address, first.family);
    });
  };
}

/**
 * A direct connection to `target`. With a policy (connections a peer asked for), an IP
 * literal is checked before connecting and a name after resolving: the address
 * checked is the address connected to, so DNS cannot smuggle in a denied one.
 */
export function openDirect(target: Endpoint, policy: AddressPolicy | undefined, onDenied: (rule: string) => void): Socket {
  if (policy !== undefined && isIP(target.host) !== 0) {
    const decision = policy.check(target.host);
    if (!decision.allowed) {
      onDenied(decision.rule);
      throw new PolicyDeniedError(`target ${target.host}:${target.port} is denied (${decision.rule})`);
    }
  }
  return connect({
    host: target.host,
    port: target.port,
    allowHalfOpen: true,
    noDelay: true,
    ...(policy !== undefined && isIP(target.host) === 0 ? { lookup: policyLookup(policy, onDenied) } : {}),
  });
}

/** A connection to a peer relay; keepalive keeps long idle relay legs honest. */
export function openToPeer(peer: PeerSpec, options: LegOptions): Socket {
  const family = isIP(peer.endpoint.host);
  if (options.peerSocketOptions !== undefined && family !== 0) {
    // The socket factory connects only to IP literals; a peer given by name is dialled as before.
    const fd = createConnectionFd({ ...options.peerSocketOptions, noDelay: true, family: family === 4 ? 4 : 6 });
    const socket = connectSocket(fd, peer.endpoint);
    socket.setKeepAlive(options.keepaliveMs > 0, options.keepaliveMs);
    return socket;
  }
  return connect({
    host: peer.endpoint.host,
    port: peer.endpoint.port,
    allowHalfOpen: true,
    noDelay: true,
    // --keepalive 0 turns keepalive off.
    keepAlive: options.keepaliveMs > 0,
    keepAliveInitialDelay: options.keepaliveMs,
  });
}

/**
 * Writes the preamble once the next leg is up: the signed header (peer legs) and any
 * client bytes that arrived meanwhile, in one write so the header costs no extra
 * segment or round trip. `early` is whatever the downstream leg has buffered. `nonce`
 * carries an incoming header's nonce on to the next relay (default: a fresh one).
 */
export function writePreamble(upstream: Socket, target: Endpoint, auth: HeaderAuth | undefined, early: Buffer | null, nonce?: Buffer): void {
  if (auth !== undefined) upstream.write(encodeHeader(target, auth, Date.now(), early ?? undefined, nonce));
  else if (early !== null) upstream.write(early);
}

/** The upstream half of a connection, connecting or connected, and what it needs. */
export interface NextLeg {
  readonly socket: Socket;
  /** The next hop as the record names it: a peer's name, or 'direct'. */
  readonly via: string;
  readonly route: Route['kind'];
  /** Written once the leg is connected and paired: the relay header (peer legs) and early bytes. */
  readonly preamble: Preamble;
  /** A pooled leg's way out if it is found dead on first use (src/pool/first-use.ts). */
  readonly retry?: UpstreamRetry;
}

export interface LegRequest {
  readonly target: Endpoint;
  readonly route: Route;
  /** Set for targets a peer asked for: a direct leg connects only to allowed addresses. */
  readonly policy: AddressPolicy | undefined;
  /** Counted when the policy refuses an address. */
  readonly onDenied: (rule: string) => void;
  /** The incoming header's nonce, passed on to the next relay (loop cut-off). */
  readonly nonce?: Buffer;
}

export interface LegFactory {
  /** Opens the next leg; throws (PolicyDeniedError, ...) when it must not be opened. */
  open(request: LegRequest): NextLeg;
}

export interface DialOptions extends LegOptions {
  /** Signs the header on peer legs. */
  readonly auth: HeaderAuth | undefined;
}

/** Dials every leg with net.connect: direct to the target, or to the route's peer relay. */
export class DialingLegFactory implements LegFactory {
  readonly #options: DialOptions;

  constructor(options: DialOptions) {
    this.#options = options;
  }

  open(request: LegRequest): NextLeg {
    const { target, route, nonce } = request;
    if (route.kind === 'peer') {
      const socket = openToPeer(route.peer, this.#options);
      const auth = this.#options.auth;
      return { socket, via: route.peer.name, route: 'peer', preamble: (early) => { writePreamble(socket, target, auth, early, nonce); } };
    }
    const socket = openDirect(target, request.policy, request.onDenied);
    return { socket, via: 'direct', route: 'direct', preamble: (early) => { writePreamble(socket, target, undefined, early); } };
  }
}

export interface NextLegContext {
  readonly router: Router;
  readonly legs: LegFactory;
  /** Bounds resolving a name to pick a route (resolving is part of connecting). */
  readonly connectTimeoutMs: number;
  /** Applied to targets a peer asked for (Destination.requestedByPeer). */
  readonly policy: AddressPolicy;
  readonly onDenied: (rule: string) => void;
  readonly onOpened: (leg: NextLeg) => void;
}

/**
 * Routes a connection's destination and attaches the leg the factory opens as its upstream
 * half. A header's nonce is passed on to the next relay, so a routing loop brings it back to
 * a relay that has seen it and is cut there as a replay, instead of multiplying connections
 * until descriptors run out. Every failure ends in conn.fail(), never in a throw or an
 * unhandled rejection (the crash handler would reset every open connection for one).
 */
export function openNextLeg(conn: SplitConnection, destination: Destination, context: NextLegContext): void {
  const { target, nonce } = destination;
  const policy = destination.requestedByPeer ? context.policy : undefined;
  const open = (route: Route): void => {
    if (conn.failed) return;
    let leg: NextLeg;
    try {
      leg = context.legs.open({ target, route, policy, onDenied: context.onDenied, ...(nonce === undefined ? {} : { nonce }) });
    } catch (err) {
      conn.fail(asError(err));
      return;
    }
    try {
      context.onOpened(leg);
      conn.attachUpstream(leg.socket, leg.via, leg.preamble, leg.retry);
    } catch (err) {
      // The connection's failure may not reach a leg it never attached: close it here.
      leg.socket.on('error', noop);
      leg.socket.destroy();
      conn.fail(asError(err));
    }
  };
  try {
    const route = context.router.route(target, context.connectTimeoutMs);
    if (route instanceof Promise) route.then(open).catch((err: unknown) => { conn.fail(asError(err)); });
    else open(route);
  } catch (err) {
    conn.fail(asError(err));
  }
}

function noop(): void { /* errors of a leg being discarded */ }

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
