/**
 * The kernel side of --intercept for one relay instance: the nftables table, and for
 * tproxy the fwmark rule and local route, set up at start and taken down at exit.
 *
 *   const icpt = await Interception.install(config.intercept, listenerPort, logger);
 *   ...                       // connections arrive on the intercept listener
 *   await icpt.stopNew();     // drain: divert no new connection
 *   await icpt.remove();      // after the drain: nothing of ours is left
 *
 * What a crashed (SIGKILLed) run left is found by name, since everything is named after
 * the instance: `install()` removes it first and says so. Nothing outside our own
 * table, fwmark rule and route is touched.
 */
import { execFile, execFileSync } from 'node:child_process';
import { InterceptError, InterceptPermissionError } from '../errors.js';
import type { Logger } from '../observe/logger.js';
import { CAP_NET_ADMIN, hasEffectiveCapability } from '../sys/index.js';
import { formatInterceptRule, type InterceptConfig } from './intercept-spec.js';
import { renderRemoval, renderRuleset, tableName, tproxyIds } from './nft-rules.js';

const COMMAND_TIMEOUT_MS = 10_000;

interface Result { readonly code: number; readonly stdout: string; readonly stderr: string }

function run(cmd: string, args: readonly string[], input?: string): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: COMMAND_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err !== null && typeof err.code === 'string') {
        reject(new InterceptError(err.code === 'ENOENT'
          ? `'${cmd}' is not installed (Debian: ${cmd === 'nft' ? 'nftables' : 'iproute2'}); --intercept needs it`
          : `cannot run ${cmd}: ${err.message}`, { cause: err }));
        return;
      }
      resolve({ code: err === null ? 0 : (typeof err.code === 'number' ? err.code : 1), stdout, stderr });
    });
    child.stdin?.on('error', () => { /* the command may exit before reading its input */ });
    child.stdin?.end(input ?? '');
  });
}

function permissionDenied(stderr: string): boolean {
  return /Operation not permitted|EPERM|Permission denied/i.test(stderr);
}

async function nft(script: string, what: string): Promise<void> {
  const r = await run('nft', ['-f', '-'], script);
  if (r.code === 0) return;
  const message = r.stderr.trim().split('\n').slice(0, 4).join(' | ');
  if (permissionDenied(r.stderr)) {
    throw new InterceptPermissionError(`--intercept: nft refused to ${what}: ${message}; it needs CAP_NET_ADMIN (run as root, or grant the capability)`);
  }
  throw new InterceptError(`--intercept: nft could not ${what}: ${message}`);
}

/** `ip [-6] rule ...` / `ip [-6] route ...` for TPROXY, per family present. */
function routeArgs(family: 4 | 6, instance: string): { rule: string[]; route: string[] } {
  const { mark, table } = tproxyIds(instance);
  const f = family === 4 ? '-4' : '-6';
  return {
    rule: [f, 'rule', '%', 'fwmark', `0x${mark.toString(16)}`, 'lookup', String(table)],
    route: [f, 'route', '%', 'local', family === 4 ? '0.0.0.0/0' : '::/0', 'dev', 'lo', 'table', String(table)],
  };
}

function withVerb(args: readonly string[], verb: string): string[] {
  return args.map((a) => (a === '%' ? verb : a));
}

/**
 * Throws InterceptPermissionError unless the process has CAP_NET_ADMIN. Called before
 * anything is bound, so a relay that cannot intercept fails at once and cleanly (an
 * `nft` EPERM later says the same, for a /proc that could not tell).
 */
export function requireNetAdmin(): void {
  if (hasEffectiveCapability(CAP_NET_ADMIN) === false) {
    throw new InterceptPermissionError('--intercept needs CAP_NET_ADMIN (nftables rules, policy routes, transparent sockets), '
      + 'and this process does not have it: run the relay as root, or grant it (systemd AmbientCapabilities=CAP_NET_ADMIN)');
  }
}

export class Interception {
  readonly #config: InterceptConfig;
  readonly #port: number;
  readonly #logger: Logger;
  readonly #families: readonly (4 | 6)[];
  #removed = false;

  private constructor(config: InterceptConfig, port: number, logger: Logger) {
    this.#config = config;
    this.#port = port;
    this.#logger = logger;
    this.#families = [...new Set(config.rules.map((r) => r.family))].sort();
  }

  get table(): string {
    return tableName(this.#config.instance);
  }

  /**
   * Checks for CAP_NET_ADMIN, removes what a crashed run of this instance left, and
   * installs the rules for `port`. Throws InterceptPermissionError or InterceptError;
   * on an error nothing of this instance is left behind.
   */
  static async install(config: InterceptConfig, port: number, logger: Logger): Promise<Interception> {
    requireNetAdmin();
    const icpt = new Interception(config, port, logger);
    await icpt.#removeStale();
    try {
      await nft(renderRuleset(config, { port, newFlows: true }), `install table inet ${icpt.table}`);
      if (config.mode === 'tproxy') {
        for (const family of icpt.#families) {
          const { rule, route } = routeArgs(family, config.instance);
          await icpt.#ip(withVerb(rule, 'add'));
          await icpt.#ip(withVerb(route, 'add'));
        }
      }
    } catch (err) {
      await icpt.remove().catch(() => undefined);
      throw err;
    }
    const { mark, table } = tproxyIds(config.instance);
    logger.info({
      event: 'intercept', table: `inet ${icpt.table}`, mode: config.mode, iface: config.iface, port,
      rules: config.rules.map(formatInterceptRule),
      ...(config.mode === 'tproxy' ? { fwmark: `0x${mark.toString(16)}`, routeTable: table } : {}),
    }, 'interception rules installed');
    return icpt;
  }

  /** Divert no new connection; flows already accepted keep working (see renderRuleset). */
  async stopNew(): Promise<void> {
    if (this.#removed) return;
    if (this.#config.mode === 'redirect') {
      await this.remove();
      return;
    }
    await nft(renderRuleset(this.#config, { port: this.#port, newFlows: false }), `update table inet ${this.table}`);
  }

  /** Removes the table and (tproxy) the fwmark rule and route. Idempotent. */
  async remove(): Promise<void> {
    if (this.#removed) return;
    this.#removed = true;
    await nft(renderRemoval(this.#config.instance), `remove table inet ${this.table}`);
    await this.#removeRoutes();
    this.#logger.info({ event: 'intercept', table: `inet ${this.table}` }, 'interception rules removed');
  }

  /**
   * The same, synchronously, for a process about to die (the crash handler): best
   * effort; what it misses, the next start removes.
   */
  removeSync(): void {
    if (this.#removed) return;
    this.#removed = true;
    const quiet = { stdio: ['pipe', 'ignore', 'ignore'] as ('pipe' | 'ignore')[], timeout: COMMAND_TIMEOUT_MS };
    try { execFileSync('nft', ['-f', '-'], { ...quiet, input: renderRemoval(this.#config.instance) }); } catch { /* next start */ }
    if (this.#config.mode !== 'tproxy') return;
    for (const family of this.#families) {
      const { rule, route } = routeArgs(family, this.#config.instance);
      for (const args of [withVerb(rule, 'del'), withVerb(route, 'del')]) {
        try { execFileSync('ip', args, quiet); } catch { /* next start */ }
      }
    }
  }

  async #removeStale(): Promise<void> {
    const listed = await run('nft', ['list', 'table', 'inet', this.table]);
    if (listed.code !== 0 && permissionDenied(listed.stderr)) {
      throw new InterceptPermissionError(`--intercept: nft refused to list table inet ${this.table}: ${listed.stderr.trim()}; it needs CAP_NET_ADMIN`);
    }
    const staleTable = listed.code === 0;
    if (staleTable) await nft(renderRemoval(this.#config.instance), `remove the stale table inet ${this.table}`);
    const staleRoutes = await this.#removeRoutes();
    if (staleTable || staleRoutes > 0) {
      this.#logger.warn({ event: 'intercept-stale', table: `inet ${this.table}`, staleTable, staleRoutes },
        `removed interception rules a previous run of instance '${this.#config.instance}' left (it did not exit cleanly)`);
    }
  }

  /**
   * Deletes our fwmark rules and local routes in both families (whatever mode the last
   * run used), each by its exact selector. Returns how many it deleted.
   */
  async #removeRoutes(): Promise<number> {
    let removed = 0;
    for (const family of [4, 6] as const) {
      const { rule, route } = routeArgs(family, this.#config.instance);
      // A crashed run may have added the rule more than once (restarts); bounded.
      for (let i = 0; i < 16; i++) {
        if ((await run('ip', withVerb(rule, 'del'))).code !== 0) break;
        removed++;
      }
      if ((await run('ip', withVerb(route, 'del'))).code === 0) removed++;
    }
    return removed;
  }

  async #ip(args: readonly string[]): Promise<void> {
    const r = await run('ip', args);
    if (r.code === 0) return;
    const message = `'ip ${args.join(' ')}' failed: ${r.stderr.trim()}`;
    if (permissionDenied(r.stderr)) throw new InterceptPermissionError(`--intercept: ${message}; it needs CAP_NET_ADMIN`);
    throw new InterceptError(`--intercept: ${message}`);
  }
}
