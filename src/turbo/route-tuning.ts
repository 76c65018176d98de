/**
 * Per-peer routes with a large initcwnd and initrwnd, through the `ip` tool (iproute2).
 *
 * For each peer address the route the kernel uses now (`ip route get`) is copied into a
 * host route (/32 or /128) with the same device, gateway, source and congestion control
 * (`congctl`), plus `initcwnd N initrwnd N`, in the main table. Only connections to that peer address take it, so
 * Internet-facing legs keep the default window.
 *
 * Ownership: every route made here carries protocol number TURBO_ROUTE_PROTO (241, unused
 * by iproute2's rt_protos and by known routing daemons), so tcpsplit removes exactly its
 * own routes: on close, and at the next start after a crash (removeStale). A host route to
 * a peer that something else made is left alone, and Turbo-Start is reported as not
 * applied for that peer. One tcpsplit instance per network namespace owns these routes.
 *
 * Not applied, and said so (TurboRouteError): a peer address that is local (the local
 * table wins over any route in main: loopback tests cannot use routes), no route to the
 * peer, or `ip` failing (no CAP_NET_ADMIN). The relay runs on without Turbo-Start.
 *
 * Measured (test/turbo-netns.test.ts): with `initcwnd 100` toward the peer,
 * tcpi_snd_cwnd is 100 right after connect; to another address it is 10.
 */
import { execFile } from 'node:child_process';
import { isIP } from 'node:net';
import { promisify } from 'node:util';
import { TurboRouteError } from '../errors.js';

const run = promisify(execFile);

export const TURBO_ROUTE_PROTO = 241;

export interface TurboRouteOptions {
  readonly initCwnd: number;
  readonly initRwnd: number;
  /** Run `ip -n NETNS` (tests, the lab); unset: this process's namespace. */
  readonly netns?: string;
}

export interface AppliedRoute {
  readonly peer: string;
  readonly family: 4 | 6;
  readonly dev: string;
  readonly gateway?: string;
  readonly prefsrc?: string;
  /** The shadowed route's congestion control (`congctl`), kept on ours. */
  readonly congestion?: string;
  readonly initCwnd: number;
  readonly initRwnd: number;
}

export interface RouteReport {
  readonly peer: string;
  readonly applied: boolean;
  /** Why not, when not applied. */
  readonly reason?: string;
}

interface IpRoute {
  readonly type?: string;
  readonly dst?: string;
  readonly dev?: string;
  readonly gateway?: string;
  readonly prefsrc?: string;
  readonly protocol?: string;
  readonly metrics?: readonly Record<string, number | string>[];
}

export class TurboRoutes {
  readonly #o: TurboRouteOptions;
  readonly #applied = new Map<string, AppliedRoute>();

  constructor(options: TurboRouteOptions) {
    this.#o = options;
  }

  applied(): AppliedRoute[] {
    return [...this.#applied.values()];
  }

  /** Applies the route for every peer address; never throws: says per peer what was not applied. */
  async applyAll(peers: readonly string[]): Promise<RouteReport[]> {
    const reports: RouteReport[] = [];
    for (const peer of peers) {
      try {
        await this.apply(peer);
        reports.push({ peer, applied: true });
      } catch (err) {
        reports.push({ peer, applied: false, reason: err instanceof Error ? err.message : String(err) });
      }
    }
    return reports;
  }

  async apply(peer: string): Promise<AppliedRoute> {
    const family = familyOf(peer);
    const [current] = await this.#json(family, ['route', 'get', peer]);
    if (current === undefined || current.dev === undefined) throw new TurboRouteError(`turbo: no route to peer ${peer}`);
    if (current.type === 'local' || current.dev === 'lo') {
      throw new TurboRouteError(`turbo: peer ${peer} is a local address; the local table wins over any route, so initcwnd cannot be set for it`);
    }
    const prefix = hostPrefix(peer, family);
    const [existing] = await this.#json(family, ['route', 'show', 'exact', prefix]);
    if (existing !== undefined && existing.protocol !== String(TURBO_ROUTE_PROTO)) {
      throw new TurboRouteError(`turbo: a host route to peer ${peer} exists (protocol ${existing.protocol ?? '?'}) and is not tcpsplit's; left alone`);
    }
    // A congestion control set on the route (`congctl`) is kept: Turbo-Start changes the
    // initial windows only. (Dropping it switched the lab's CUBIC rc-rs legs to the
    // namespace default, BBR, under Turbo-Start: test/lab-turbo.test.ts.)
    const congestion = (current.metrics ?? []).map((m) => m['congestion']).find((c) => c !== undefined);
    const route: AppliedRoute = {
      peer, family, dev: current.dev, initCwnd: this.#o.initCwnd, initRwnd: this.#o.initRwnd,
      ...(current.gateway === undefined ? {} : { gateway: current.gateway }),
      ...(current.prefsrc === undefined ? {} : { prefsrc: current.prefsrc }),
      ...(typeof congestion === 'string' && /^[a-z0-9_]{1,15}$/.test(congestion) ? { congestion } : {}),
    };
    await this.#ip(family, [
      'route', 'replace', prefix,
      ...(route.gateway === undefined ? [] : ['via', route.gateway]),
      'dev', route.dev,
      ...(route.prefsrc === undefined ? [] : ['src', route.prefsrc]),
      'proto', String(TURBO_ROUTE_PROTO),
      'initcwnd', String(route.initCwnd), 'initrwnd', String(route.initRwnd),
      ...(route.congestion === undefined ? [] : ['congctl', route.congestion]),
    ]);
    this.#applied.set(peer, route);
    return route;
  }

  /** The initcwnd/initrwnd the kernel has on tcpsplit's route to `peer`, read back; undefined if there is none. */
  async read(peer: string): Promise<{ initCwnd: number | undefined; initRwnd: number | undefined } | undefined> {
    const family = familyOf(peer);
    const [route] = await this.#json(family, ['route', 'show', 'exact', hostPrefix(peer, family), 'proto', String(TURBO_ROUTE_PROTO)]);
    if (route === undefined) return undefined;
    const metrics = Object.assign({}, ...(route.metrics ?? [])) as Record<string, number | undefined>;
    return { initCwnd: metrics.initcwnd, initRwnd: metrics.initrwnd };
  }

  async remove(peer: string): Promise<void> {
    const family = familyOf(peer);
    this.#applied.delete(peer);
    const [route] = await this.#json(family, ['route', 'show', 'exact', hostPrefix(peer, family), 'proto', String(TURBO_ROUTE_PROTO)]);
    if (route === undefined) return;
    await this.#ip(family, ['route', 'del', hostPrefix(peer, family), 'proto', String(TURBO_ROUTE_PROTO)]);
  }

  /** Removes every route this instance applied. */
  async removeAll(): Promise<void> {
    const errors: unknown[] = [];
    for (const peer of [...this.#applied.keys()]) {
      try { await this.remove(peer); } catch (err) { errors.push(err); }
    }
    if (errors.length > 0) throw new TurboRouteError(`turbo: ${errors.length} route(s) could not be removed`, { cause: errors[0] });
  }

  /** Removes tcpsplit's routes left by a process that did not exit cleanly; returns how many. */
  async removeStale(): Promise<number> {
    let removed = 0;
    for (const family of [4, 6] as const) {
      for (const route of await this.#json(family, ['route', 'show', 'proto', String(TURBO_ROUTE_PROTO)])) {
        if (route.dst === undefined) continue;
        const dst = route.dst.includes('/') ? route.dst : hostPrefix(route.dst, family);
        await this.#ip(family, ['route', 'del', dst, 'proto', String(TURBO_ROUTE_PROTO)]);
        removed++;
      }
    }
    return removed;
  }

  async #json(family: 4 | 6, args: readonly string[]): Promise<IpRoute[]> {
    const out = await this.#ip(family, ['-j', ...args]);
    if (out.trim() === '') return [];
    try {
      return JSON.parse(out) as IpRoute[];
    } catch (err) {
      throw new TurboRouteError(`turbo: cannot parse the output of ip ${args.join(' ')}`, { cause: err });
    }
  }

  async #ip(family: 4 | 6, args: readonly string[]): Promise<string> {
    const argv = [...(this.#o.netns === undefined ? [] : ['-n', this.#o.netns]), family === 6 ? '-6' : '-4', ...args];
    try {
      const { stdout } = await run('ip', argv, { timeout: 10_000 });
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; message: string; code?: string };
      const detail = e.code === 'ENOENT' ? 'the ip tool (iproute2) is not installed' : (e.stderr ?? e.message).trim();
      throw new TurboRouteError(`turbo: ip ${argv.join(' ')} failed: ${detail}`, { cause: err });
    }
  }
}

function familyOf(peer: string): 4 | 6 {
  const family = isIP(peer);
  if (family === 0) throw new TurboRouteError(`turbo: peer address '${peer}' is not an IP literal (resolve it first)`);
  return family === 4 ? 4 : 6;
}

function hostPrefix(address: string, family: 4 | 6): string {
  return `${address}/${family === 4 ? 32 : 128}`;
}
