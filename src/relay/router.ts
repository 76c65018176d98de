import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { DIRECT, type Endpoint, type PeerSpec, type RelayConfig } from '../config/relay-config.js';
import { RouteTable } from '../net/route-table.js';
import { ResolveError } from '../errors.js';

export type Route =
  | { readonly kind: 'direct' }
  | { readonly kind: 'peer'; readonly peer: PeerSpec };

const DIRECT_ROUTE: Route = Object.freeze({ kind: 'direct' });

/**
 * Decides the next hop for a target: a peer relay or a direct connection.
 * `--route CIDR=NAME|direct`; the longest prefix wins; the default is direct.
 * A DNS-name target is resolved here only when some route could send it to a peer:
 * the name itself travels on, so the relay nearest the server resolves it for the
 * connection.
 */
export class Router {
  readonly #table = new RouteTable<Route>();
  readonly #peerRoutes: number;

  constructor(config: Pick<RelayConfig, 'peers' | 'routes'>) {
    const peers = new Map(config.peers.map((p) => [p.name, p]));
    let peerRoutes = 0;
    for (const route of config.routes) {
      if (route.via === DIRECT) {
        this.#table.add(route.cidr, DIRECT_ROUTE);
        continue;
      }
      const peer = peers.get(route.via);
      // load-config validates names; this guards programmatic use.
      if (peer === undefined) throw new Error(`route ${route.cidr} names unknown peer '${route.via}'`);
      this.#table.add(route.cidr, Object.freeze({ kind: 'peer', peer }));
      peerRoutes++;
    }
    this.#peerRoutes = peerRoutes;
  }

  /**
   * Synchronous for IP literals (the common case); resolves names only when it matters,
   * within `timeoutMs` (the connect timeout: resolving is part of connecting).
   */
  route(target: Endpoint, timeoutMs: number): Route | Promise<Route> {
    if (this.#peerRoutes === 0) return DIRECT_ROUTE;
    if (isIP(target.host) !== 0) return this.#table.lookup(target.host) ?? DIRECT_ROUTE;
    return this.#routeName(target.host, timeoutMs);
  }

  async #routeName(host: string, timeoutMs: number): Promise<Route> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => { reject(new ResolveError(`resolving '${host}' to pick a route took over ${timeoutMs} ms`)); }, timeoutMs);
    });
    try {
      const { address } = await Promise.race([lookup(host), timeout]);
      return this.#table.lookup(address) ?? DIRECT_ROUTE;
    } catch (err) {
      if (err instanceof ResolveError) throw err;
      throw new ResolveError(`cannot resolve '${host}' to pick a route: ${(err as Error).message}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }
}
