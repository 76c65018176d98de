/**
 * A running lab: the four namespaces, their links, and the emulator threads, owned by
 * this process. `tcpsplit lab up` runs one inside a detached daemon (daemon.ts);
 * tests and later code create one in-process:
 *
 *   const lab = await Lab.create({ prefix: 't1', profile: PROFILES.paper });
 *   try {
 *     const r = await lab.exec('client', 'ping', ['-c', '3', lab.address('server', 'path')]);
 *   } finally {
 *     await lab.destroy();
 *   }
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { LabBusyError, LabError } from '../errors.js';
import { silentLogger, type Logger } from '../observe/logger.js';
import { closeTun } from '../sys/index.js';
import { LAB_NODES, LINK_NAMES, LINK_PLAN, address6Of, addressOf, type AddressSide, type LabNode, type LinkName, type LinkPlan } from './address-plan.js';
import { run, type CommandResult } from './command.js';
import type { DirectionCounters } from './emulator/counters.js';
import { LinkEmulator } from './emulator/link-emulator.js';
import { recordLateness } from './emulator/lateness.js';
import { PROFILES, verifyProfile, type LabProfile, type LinkConfig } from './link-config.js';
import { DEFAULT_PREFIX, ownerAlive, readCmdline, readState, removeState, verifyPrefix, writeState } from './lab-state.js';
import { CORE_TOOLS, isTool, requireRoot, requireTools } from './tools.js';
import { removeStaleNginxDirs } from './nginx.js';
import { buildTopology, namespaceName, teardownTopology, topologyExists, type LinkDevices } from './topology.js';

export interface LabOptions {
  /** Names are `<prefix>-client` etc.; default 'tsl'. */
  readonly prefix?: string;
  /** Default: the paper's RTTs (PROFILES.paper). */
  readonly profile?: LabProfile;
  readonly logger?: Logger;
  /** Set by the daemon so that `lab down` may signal it. */
  readonly ownerKind?: 'daemon' | 'process';
  readonly controlSocket?: string;
  /** Also give the nodes the IPv6 plan (address-plan.ts LINK_PLAN6); off by default. */
  readonly ipv6?: boolean;
}

export interface ExecOptions {
  /** Default 60 s; the command is killed after it. */
  readonly timeoutMs?: number;
  readonly input?: string;
}

export interface SpawnInLabOptions {
  readonly stdio?: StdioOptions;
}

export interface LinkStatus {
  readonly name: LinkName;
  readonly plan: LinkPlan;
  readonly config: LinkConfig;
  readonly counters: { readonly up: DirectionCounters; readonly down: DirectionCounters };
  readonly failure?: string;
}

export interface LabStatus {
  readonly prefix: string;
  readonly ownerPid: number;
  readonly startedAt: string;
  readonly namespaces: Readonly<Record<LabNode, string>>;
  readonly links: readonly LinkStatus[];
  /** The web server `lab up` starts in 'server' (absent with --no-web, and for a Lab made in code). */
  readonly web?: LabWebStatus;
}

export interface LabWebStatus {
  readonly port: number;
  /** File name -> bytes, served at the root: http://ADDRESS/10kb. */
  readonly files: Readonly<Record<string, number>>;
  /** Base URLs: through rc and rs ('path'), and over the direct 'internet' link. */
  readonly path: string;
  readonly internet: string;
}

/**
 * Removes a lab left by a crashed owner: its namespaces (and processes in them) and its
 * state. Refuses, with LabBusyError, while the owner is alive.
 */
export async function cleanupStaleLab(prefix: string, logger: Logger = silentLogger()): Promise<boolean> {
  const state = readState(prefix);
  if (state !== undefined && ownerAlive(state)) {
    throw new LabBusyError(
      `lab '${prefix}' is up, owned by live pid ${state.ownerPid} (${state.ownerKind}); ` +
      `${state.ownerKind === 'daemon' ? `run 'tcpsplit lab down --prefix ${prefix}'` : 'that process must destroy it'} or use another --prefix`);
  }
  // nginx's temp dirs of a dead owner (a SIGKILLed `lab up` daemon leaves its web server's).
  const dirs = removeStaleNginxDirs(prefix);
  if (state === undefined && !topologyExists(prefix)) return false;
  logger.warn({ prefix, stalePid: state?.ownerPid, nginxDirs: dirs }, 'removing a stale lab');
  await teardownTopology(prefix);
  removeState(prefix);
  return true;
}

export class Lab {
  readonly prefix: string;
  readonly profile: LabProfile;
  readonly startedAt = new Date().toISOString();
  readonly #logger: Logger;
  readonly #devices: LinkDevices;
  readonly #links: Map<LinkName, LinkEmulator>;
  readonly #children = new Set<ChildProcess>();
  #destroyed: Promise<void> | undefined;

  private constructor(prefix: string, profile: LabProfile, devices: LinkDevices, links: Map<LinkName, LinkEmulator>, logger: Logger) {
    this.prefix = prefix;
    this.profile = profile;
    this.#devices = devices;
    this.#links = links;
    this.#logger = logger;
  }

  static async create(options: LabOptions = {}): Promise<Lab> {
    const prefix = verifyPrefix(options.prefix ?? DEFAULT_PREFIX);
    const profile = options.profile ?? PROFILES.paper;
    verifyProfile(profile);
    const logger = options.logger ?? silentLogger();
    requireRoot();
    requireTools(CORE_TOOLS);
    await cleanupStaleLab(prefix, logger);
    const ownerCmdline = readCmdline(process.pid) ?? '';
    writeState({
      version: 1, prefix, ownerPid: process.pid, ownerCmdline, ownerKind: options.ownerKind ?? 'process',
      startedAt: new Date().toISOString(), profile,
      ...(options.controlSocket === undefined ? {} : { controlSocket: options.controlSocket }),
    });
    let devices: LinkDevices | undefined;
    const links = new Map<LinkName, LinkEmulator>();
    try {
      devices = await buildTopology(prefix, { ipv6: options.ipv6 === true });
      for (const name of LINK_NAMES) {
        const d = devices[name];
        links.set(name, await LinkEmulator.start(name, profile[name], d.a.fd, d.b.fd));
      }
    } catch (err) {
      await Promise.all([...links.values()].map((l) => l.stop()));
      if (devices !== undefined) for (const d of Object.values(devices)) { closeTun(d.a); closeTun(d.b); }
      await teardownTopology(prefix).catch((e: unknown) => { logger.error({ err: e }, 'teardown after failed create'); });
      removeState(prefix);
      throw err;
    }
    logger.info({ prefix }, 'lab up');
    return new Lab(prefix, profile, devices, links, logger);
  }

  namespace(node: LabNode): string {
    return namespaceName(this.prefix, node);
  }

  /** An address from the plan, e.g. address('server', 'path') or address('rc', 'client'). */
  address<N extends LabNode>(node: N, side: AddressSide<N>): string {
    return addressOf(node, side);
  }

  /** The IPv6 plan's address (labs created with `ipv6: true`), e.g. address6('server', 'path'). */
  address6<N extends LabNode>(node: N, side: AddressSide<N>): string {
    return address6Of(node, side);
  }

  /** Runs a command in a node's namespace and collects its output. */
  async exec(node: LabNode, cmd: string, args: readonly string[] = [], options: ExecOptions = {}): Promise<CommandResult> {
    this.#checkUsable(cmd);
    return run('ip', ['netns', 'exec', this.namespace(node), cmd, ...args], {
      ...options,
      onSpawn: (child) => { this.#track(child); },
    });
  }

  /** Starts a command in a node's namespace; it is killed at destroy() if still running. */
  spawn(node: LabNode, cmd: string, args: readonly string[] = [], options: SpawnInLabOptions = {}): ChildProcess {
    this.#checkUsable(cmd);
    const child = spawn('ip', ['netns', 'exec', this.namespace(node), cmd, ...args], { stdio: options.stdio ?? 'pipe' });
    this.#track(child);
    return child;
  }

  linkCounters(name: LinkName): { up: DirectionCounters; down: DirectionCounters } {
    const link = this.#links.get(name);
    if (link === undefined) throw new LabError(`no link ${name}`);
    return link.counters();
  }

  status(): LabStatus {
    const namespaces = Object.fromEntries(LAB_NODES.map((n) => [n, this.namespace(n)])) as Record<LabNode, string>;
    const links = LINK_NAMES.map((name): LinkStatus => {
      const link = this.#links.get(name);
      const failure = link?.failure();
      return {
        name, plan: LINK_PLAN[name], config: this.profile[name], counters: this.linkCounters(name),
        ...(failure === undefined ? {} : { failure: failure.message }),
      };
    });
    return { prefix: this.prefix, ownerPid: process.pid, startedAt: this.startedAt, namespaces, links };
  }

  /** Ends spawned processes, the emulator threads, the devices, namespaces and state. Idempotent. */
  destroy(): Promise<void> {
    this.#destroyed ??= this.#destroy();
    return this.#destroyed;
  }

  async #destroy(): Promise<void> {
    const children = [...this.#children];
    for (const c of children) c.kill('SIGTERM');
    const deadline = Date.now() + 2000;
    while (children.some((c) => c.exitCode === null && c.signalCode === null) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await Promise.all([...this.#links.values()].map((l) => l.stop()));
    for (const [name, link] of this.#links) {
      try {
        recordLateness(this.prefix, name, link.counters());
      } catch (err) {
        this.#logger.warn({ err }, 'could not record lateness');
      }
    }
    for (const d of Object.values(this.#devices)) {
      closeTun(d.a);
      closeTun(d.b);
    }
    try {
      await teardownTopology(this.prefix);
    } finally {
      const state = readState(this.prefix);
      if (state?.ownerPid === process.pid) removeState(this.prefix);
    }
    this.#logger.info({ prefix: this.prefix }, 'lab down');
  }

  #checkUsable(cmd: string): void {
    if (this.#destroyed !== undefined) throw new LabError(`lab '${this.prefix}' is destroyed`);
    if (isTool(cmd)) requireTools([cmd]);
  }

  #track(child: ChildProcess): void {
    this.#children.add(child);
    child.once('exit', () => { this.#children.delete(child); });
    child.once('error', () => { this.#children.delete(child); });
  }
}
