/**
 * Turbo-Start's routes for one relay (the supervisor's, applied once, not per worker):
 * - at start, tcpsplit's routes left by a relay that died without removing them go first
 *   (route-tuning.ts marks them with its own protocol number), then a route with
 *   initcwnd/initrwnd is made for each peer given by an IP address;
 * - a reload that switches Turbo-Start, changes the windows or the peers re-applies;
 * - at exit every route made is removed.
 * What could not be applied (no CAP_NET_ADMIN, a peer on this host, a peer given by name)
 * is logged per peer, and the relay runs without it. The buffers are the workers' (set
 * before connect on relay-to-relay legs: src/relay/relay.ts).
 */
import { isIP } from 'node:net';
import type { RelayConfig } from '../config/relay-config.js';
import type { Logger } from '../observe/logger.js';
import { labelsFor, type Metrics } from '../observe/metrics.js';
import { errorCode } from '../errors.js';
import { TurboRoutes, type RouteReport } from './route-tuning.js';

export interface TurboPeerReport extends RouteReport {
  readonly name: string;
  readonly initCwnd: number;
  readonly initRwnd: number;
}

export class TurboStart {
  readonly #logger: Logger;
  #routes: TurboRoutes | undefined;
  #reports: TurboPeerReport[] = [];
  #key = '';
  /** Addresses of peers that authenticated on --accept, tried once each (learn()). */
  readonly #learned = new Set<string>();

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /** What was applied, per peer (empty when Turbo-Start is off or there are no peers). */
  reports(): readonly TurboPeerReport[] {
    return this.#reports;
  }

  /** Gauges on the supervisor's registry: per peer, whether the route is applied and its windows. */
  register(metrics: Metrics): void {
    // Routes are the relay's, not a worker's: one value per peer, never a sum.
    const ONE_PER_RELAY = { labelNames: ['peer'], aggregator: 'first' } as const;
    const per = (pick: (r: TurboPeerReport) => number) => () => this.#reports.map((r) => [labelsFor('peer', r.name), pick(r)] as const);
    metrics.computed('tcpsplit_turbo_route_applied', 'Turbo-Start: 1 when the route to the peer with initcwnd/initrwnd is applied, 0 when it could not be.', 'gauge',
      per((r) => (r.applied ? 1 : 0)), ONE_PER_RELAY);
    metrics.computed('tcpsplit_turbo_initcwnd', 'Turbo-Start: the initcwnd applied on the route to the peer, segments (0: not applied).', 'gauge',
      per((r) => (r.applied ? r.initCwnd : 0)), ONE_PER_RELAY);
    metrics.computed('tcpsplit_turbo_initrwnd', 'Turbo-Start: the initrwnd applied on the route to the peer, segments (0: not applied).', 'gauge',
      per((r) => (r.applied ? r.initRwnd : 0)), ONE_PER_RELAY);
  }

  /** At start: removes stale routes, then applies `config`'s. Never throws. */
  async start(config: RelayConfig): Promise<void> {
    try {
      const removed = await new TurboRoutes({ initCwnd: 1, initRwnd: 1 }).removeStale();
      if (removed > 0) this.#logger.info({ event: 'turbo', removed }, `turbo: removed ${removed} route(s) left by a relay that did not exit cleanly`);
    } catch (err) {
      this.#logger.warn({ event: 'turbo', code: errorCode(err) }, `turbo: could not look for stale routes: ${err instanceof Error ? err.message : String(err)}`);
    }
    await this.apply(config);
  }

  /** Applies `config` (at start and on reload); a change re-applies every route. Never throws. */
  async apply(config: RelayConfig): Promise<void> {
    const key = config.turbo ? JSON.stringify([config.turboInitCwnd, config.turboInitRwnd, config.peers]) : '';
    if (key === this.#key) return;
    await this.stop();
    this.#key = key;
    if (!config.turbo || config.peers.length === 0) return;
    const routes = new TurboRoutes({ initCwnd: config.turboInitCwnd, initRwnd: config.turboInitRwnd });
    this.#routes = routes;
    const reports: TurboPeerReport[] = [];
    const byAddress = new Map<string, string>();
    for (const peer of config.peers) {
      const base = { name: peer.name, peer: peer.endpoint.host, initCwnd: config.turboInitCwnd, initRwnd: config.turboInitRwnd };
      if (isIP(peer.endpoint.host) === 0) {
        reports.push({ ...base, applied: false, reason: `turbo: peer ${peer.name} is given by name (${peer.endpoint.host}); routes need its address` });
        continue;
      }
      byAddress.set(peer.endpoint.host, peer.name);
    }
    for (const r of await routes.applyAll([...byAddress.keys()])) {
      reports.push({ ...r, name: byAddress.get(r.peer) ?? r.peer, initCwnd: config.turboInitCwnd, initRwnd: config.turboInitRwnd });
    }
    this.#reports = reports;
    for (const r of reports) {
      if (r.applied) {
        this.#logger.info({ event: 'turbo', peer: r.name, address: r.peer, initCwnd: r.initCwnd, initRwnd: r.initRwnd },
          `turbo: route to peer ${r.name} (${r.peer}) with initcwnd ${r.initCwnd} initrwnd ${r.initRwnd}`);
      } else {
        this.#logger.warn({ event: 'turbo', peer: r.name, address: r.peer, reason: r.reason },
          `turbo: not applied for peer ${r.name}, running without it: ${r.reason ?? 'unknown'}`);
      }
    }
  }

  /**
   * A peer authenticated on --accept from `address`: the route toward it gets the same
   * windows, so this relay's sends to it (the response direction) skip slow start too.
   * Once per address until the next re-apply. Never throws.
   */
  async learn(address: string, config: RelayConfig): Promise<void> {
    if (!config.turbo || this.#learned.has(address) || isIP(address) === 0) return;
    this.#learned.add(address);
    if (this.#reports.some((r) => r.peer === address)) return;
    const routes = this.#routes ?? new TurboRoutes({ initCwnd: config.turboInitCwnd, initRwnd: config.turboInitRwnd });
    this.#routes = routes;
    if (this.#key === '') this.#key = JSON.stringify([config.turboInitCwnd, config.turboInitRwnd, config.peers]);
    const [r] = await routes.applyAll([address]);
    if (r === undefined) return;
    const report: TurboPeerReport = { ...r, name: address, initCwnd: config.turboInitCwnd, initRwnd: config.turboInitRwnd };
    this.#reports = [...this.#reports, report];
    if (r.applied) {
      this.#logger.info({ event: 'turbo', peer: address, address, initCwnd: report.initCwnd, initRwnd: report.initRwnd },
        `turbo: route toward authenticated peer ${address} with initcwnd ${report.initCwnd} initrwnd ${report.initRwnd}`);
    } else {
      this.#logger.info({ event: 'turbo', peer: address, address, reason: r.reason }, `turbo: no route toward authenticated peer ${address}: ${r.reason ?? 'unknown'}`);
    }
  }

  /** Removes every route applied (at exit, and before re-applying). Never throws. */
  async stop(): Promise<void> {
    const routes = this.#routes;
    this.#routes = undefined;
    this.#reports = [];
    this.#learned.clear();
    this.#key = '';
    if (routes === undefined) return;
    try {
      await routes.removeAll();
    } catch (err) {
      this.#logger.error({ event: 'turbo', code: errorCode(err) }, `turbo: ${err instanceof Error ? err.message : String(err)}; the next start removes them`);
    }
  }
}
