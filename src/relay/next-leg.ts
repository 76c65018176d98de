/**
 * Opening the next leg of a split connection, as small composable steps:
 *   route (router.ts) -> open a socket (direct, or to a peer relay) -> preamble on connect.
 * Later ways to get the socket (early SYN, a pool of pre-established connections,
 * special socket options) slot in as other openers with the same result: a Socket that
 * is connecting or connected, and a preamble to write once it is.
 */
import { connect, isIP, type LookupFunction, type Socket } from 'node:net';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import type { Endpoint, PeerSpec } from '../config/relay-config.js';
import type { AddressPolicy } from '../net/address-policy.js';
import type { HeaderAuth } from '../protocol/header-auth.js';
import { encodeHeader } from '../protocol/header-encoder.js';
import { PolicyDeniedError, ResolveError } from '../errors.js';

export interface LegOptions {
  readonly keepaliveMs: number;
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
