/**
 * The iptables rules that queue SYNs for early SYN: in chains of tcpsplit's own, jumped
 * to from one rule in each built-in chain used, removed on close and, after a crash, at
 * the next start (removeStale, which install() runs first).
 *
 * Why iptables and not nftables: this kernel has no nft `queue` expression
 * (CONFIG_NFT_QUEUE unset: an nft queue rule fails with ENOENT), while the xt NFQUEUE
 * target works through nft_compat. The xt `bpf` match picks the queue (syn-steer-bpf.ts).
 *
 * Per family (iptables for IPv4, ip6tables for IPv6), in table `mangle`:
 *
 *   PREROUTING  -m comment --comment "tcpsplit <instance> early SYN" -j TCPSPLIT-<name>
 *   TCPSPLIT-<name>    -p tcp --syn -d CIDR [--dport A:B] [-i IFACE] -j TCPSPLIT-<name>-Q   (one per capture rule)
 *   TCPSPLIT-<name>-Q  -m bpf --bytecode <steer == k> -j NFQUEUE --queue-num base+k --queue-bypass   (one per worker)
 *
 * mangle PREROUTING runs before nat PREROUTING (REDIRECT), so the queued SYN still has
 * its original destination, and it sees forwarded and local (loopback) SYNs alike.
 * `--queue-bypass`: while no reader is bound (tcpsplit down, a worker restarting) SYNs
 * pass as if the rule were not there. Capture is limited to the destinations asked.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { SynRulesError } from '../errors.js';
import { Cidr } from '../net/cidr.js';
import { MAX_STEER_WORKERS } from '../net/steer.js';
import { formatBytecode, steeringProgram } from './syn-steer-bpf.js';

/** A destination to capture SYNs for; the shape of an `--intercept` rule or a `-L` listener. */
export interface SynCaptureRule {
  /** CIDR text, e.g. '198.18.3.0/24', 'fd00::/64', '198.18.3.2/32'. */
  readonly cidr: string;
  /** Inclusive destination port range; undefined: every port. */
  readonly ports?: { readonly first: number; readonly last: number } | undefined;
}

export interface SynRulesOptions {
  /** Names the chains; the same instance's stale rules are removed at install. [A-Za-z0-9_]{1,32}. */
  readonly instance: string;
  /** Worker count N: queue base+k receives the SYNs steer() gives worker k. */
  readonly workers: number;
  /** The first queue number (a host with several relays gives each its own range). */
  readonly queueBase: number;
  readonly capture: readonly SynCaptureRule[];
  /** Only SYNs arriving on this interface. */
  readonly iface?: string;
  /** Built-in chains of `mangle` that jump to ours (default PREROUTING). */
  readonly hooks?: readonly ('PREROUTING' | 'INPUT' | 'FORWARD')[];
  /**
   * The pid recorded in every rule's comment (`... early SYN pid N`). install() refuses to
   * remove an instance's rules whose recorded owner is another live process, and
   * removeOrphanedSynRules() removes only rules whose owner is gone. Default: this process.
   */
  readonly owner?: number;
}

const TABLE = 'mangle';
const INSTANCE = /^[A-Za-z0-9_]{1,32}$/;
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
/** iptables chain names hold 28 characters: 'TCPSPLIT-' + 17 + '-Q'. */
const NAME_ROOM = 17;
const COMMAND_TIMEOUT_MS = 15_000;

/** The chain names for an instance; long instances keep a prefix and a hash, so names stay stable. */
export function chainNames(instance: string): { main: string; steer: string } {
  if (!INSTANCE.test(instance)) throw new SynRulesError(`early-SYN rules: instance '${instance}' is not 1..32 of [A-Za-z0-9_]`);
  const name = instance.length <= NAME_ROOM
    ? instance
    : `${instance.slice(0, NAME_ROOM - 9)}_${createHash('sha256').update(instance).digest('hex').slice(0, 8)}`;
  return { main: `TCPSPLIT-${name}`, steer: `TCPSPLIT-${name}-Q` };
}

function commandFor(family: 4 | 6): string {
  return family === 4 ? 'iptables' : 'ip6tables';
}

interface Result { code: number | null; stdout: string; stderr: string }

function run(cmd: string, args: readonly string[]): Promise<Result> {
  return new Promise((resolve, reject) => {
    // Relays started by systemd or sudo may lack the sbin directories in PATH.
    const env = { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` };
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    const timer = setTimeout(() => { child.kill('SIGKILL'); }, COMMAND_TIMEOUT_MS);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new SynRulesError(`cannot run ${cmd}: ${e.message} (install the Debian package iptables)`, { cause: e }));
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function runChecked(cmd: string, args: readonly string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new SynRulesError(`${cmd} ${args.join(' ')} failed (exit ${r.code ?? 'signal'}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** The arguments of each rule, in install order, for one family (exported for tests and docs). */
export function ruleArgs(options: SynRulesOptions, family: 4 | 6): string[][] {
  const { main, steer } = chainNames(options.instance);
  const comment = ['-m', 'comment', '--comment', `tcpsplit ${options.instance} early SYN pid ${options.owner ?? process.pid}`];
  const rules: string[][] = [];
  for (const rule of options.capture) {
    let cidr: Cidr;
    try {
      cidr = Cidr.parse(rule.cidr);
    } catch (err) {
      throw new SynRulesError(`early-SYN rules: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    if (cidr.family !== family) continue;
    const args = ['-A', main, '-p', 'tcp', '--syn', '-d', cidr.toString()];
    if (rule.ports !== undefined) {
      const { first, last } = rule.ports;
      if (!Number.isInteger(first) || !Number.isInteger(last) || first < 1 || last > 65535 || first > last) {
        throw new SynRulesError(`early-SYN rules: bad port range ${first}-${last}`);
      }
      args.push('--dport', first === last ? `${first}` : `${first}:${last}`);
    }
    if (options.iface !== undefined) args.push('-i', options.iface);
    rules.push([...args, ...comment, '-j', steer]);
  }
  if (rules.length === 0) return [];
  for (let k = 0; k < options.workers; k++) {
    rules.push(['-A', steer, '-m', 'bpf', '--bytecode', formatBytecode(steeringProgram(family, options.workers, k)),
      ...comment, '-j', 'NFQUEUE', '--queue-num', String(options.queueBase + k), '--queue-bypass']);
  }
  for (const hook of options.hooks ?? ['PREROUTING']) rules.push(['-I', hook, '1', ...comment, '-j', main]);
  return rules;
}

function validate(options: SynRulesOptions): void {
  chainNames(options.instance);
  const { workers, queueBase } = options;
  if (!Number.isInteger(workers) || workers < 1 || workers > MAX_STEER_WORKERS) {
    throw new SynRulesError(`early-SYN rules: workers must be an integer in 1..${MAX_STEER_WORKERS}, got ${workers}`);
  }
  if (!Number.isInteger(queueBase) || queueBase < 0 || queueBase + workers - 1 > 0xffff) {
    throw new SynRulesError(`early-SYN rules: queues ${queueBase}..${queueBase + workers - 1} are not within 0..65535`);
  }
  if (options.iface !== undefined && !IFNAME.test(options.iface)) {
    throw new SynRulesError(`early-SYN rules: '${options.iface}' is not an interface name`);
  }
}

/**
 * Removes every rule and chain of `instance`, in both families: the jumps from built-in
 * chains first, then our chains. Returns how many rules and chains it removed (0: none
 * were there). Touches nothing that does not name our chains.
 */
export async function removeSynRules(instance: string): Promise<number> {
  const { main, steer } = chainNames(instance);
  let removed = 0;
  for (const family of [4, 6] as const) {
    const cmd = commandFor(family);
    const listing = await run(cmd, ['-w', '5', '-t', TABLE, '-S']);
    if (listing.code !== 0) {
      if (listing.code === null || /not found|No such file/i.test(listing.stderr)) continue;
      throw new SynRulesError(`${cmd} -t ${TABLE} -S failed: ${listing.stderr.trim()}`);
    }
    const lines = listing.stdout.split('\n');
    const jumps = lines.filter((l) => l.startsWith('-A ') && l.endsWith(` -j ${main}`) && !l.startsWith(`-A ${main} `) && !l.startsWith(`-A ${steer} `));
    for (const line of jumps) {
      await runChecked(cmd, ['-w', '5', '-t', TABLE, ...splitRule(line.replace(/^-A /, '-D '))]);
      removed++;
    }
    for (const chain of [main, steer]) {
      if (!lines.includes(`-N ${chain}`)) continue;
      await runChecked(cmd, ['-w', '5', '-t', TABLE, '-F', chain]);
    }
    for (const chain of [main, steer]) {
      if (!lines.includes(`-N ${chain}`)) continue;
      await runChecked(cmd, ['-w', '5', '-t', TABLE, '-X', chain]);
      removed++;
    }
  }
  return removed;
}

const OWNER_COMMENT = /tcpsplit (\S+) early SYN pid (\d+)/;

/** Whether process `pid` exists (signal 0: EPERM means it exists, as another user's). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Every instance with early-SYN rules in this namespace, with the owner pids its rules record. */
export async function synRuleOwners(): Promise<Map<string, Set<number>>> {
  const owners = new Map<string, Set<number>>();
  for (const family of [4, 6] as const) {
    const listing = await run(commandFor(family), ['-w', '5', '-t', TABLE, '-S']);
    if (listing.code !== 0) continue;
    for (const line of listing.stdout.split('\n')) {
      const m = OWNER_COMMENT.exec(line);
      if (m?.[1] === undefined || m[2] === undefined) continue;
      const set = owners.get(m[1]) ?? new Set<number>();
      set.add(Number(m[2]));
      owners.set(m[1], set);
    }
  }
  return owners;
}

/**
 * Removes the rules of every instance whose recorded owners are all gone (a relay killed
 * with SIGKILL, whose listener port, and so its instance name, the next start may not
 * reuse). A live relay's rules are never touched. Returns the instances removed.
 */
export async function removeOrphanedSynRules(): Promise<string[]> {
  const removed: string[] = [];
  for (const [instance, pids] of await synRuleOwners()) {
    if ([...pids].some((pid) => pid === process.pid || alive(pid))) continue;
    if (!INSTANCE.test(instance)) continue;
    await removeSynRules(instance);
    removed.push(instance);
  }
  return removed;
}

/** `-S` output back into argv: words, with "double-quoted" comments kept whole. */
function splitRule(line: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : (m[2] ?? ''));
  return out;
}

/**
 * Whether table `mangle` of `family` holds nothing but its built-in chains' ACCEPT
 * policies (or does not exist): then our install makes it, in effect, and close() may
 * delete it again (iptables-nft makes the table on first use and never removes it).
 */
async function mangleTableUnused(family: 4 | 6): Promise<boolean> {
  const listing = await run(commandFor(family), ['-w', '5', '-t', TABLE, '-S']);
  if (listing.code !== 0) return false;
  return listing.stdout.split('\n').every((l) => l === '' || /^-P [A-Z]+ ACCEPT$/.test(l));
}

/**
 * Deletes the `mangle` table iptables-nft made for our rules, if it holds no rule of
 * anyone now (only its built-in chains with policy ACCEPT): the ruleset is then as it
 * was before the relay started. A table with any rule or chain of someone else stays.
 */
async function removeEmptyMangleTable(family: 4 | 6): Promise<void> {
  if (!(await mangleTableUnused(family))) return;
  await run('nft', ['delete', 'table', family === 4 ? 'ip' : 'ip6', TABLE]).catch(() => undefined);
}

/**
 * The `mangle` tables this process made, and how many of its rule groups use each
 * family. A relay installs several groups (one per capture instance, and the queue
 * probe's) and closes them together. The table belongs to the set, not to the group
 * that happened to find it missing: it is removed when the last group of the set is
 * closed, whichever closes last. Deciding per group left the table behind when the
 * group that made it closed while another group's rules were still in it (CI run c7).
 */
const tables = new Map<4 | 6, { users: number; created: Promise<boolean> }>();

/** Counts a group in; the first one looks (once, before any rule of the set is in) whether the table is ours to remove. */
async function useTable(family: 4 | 6): Promise<void> {
  let entry = tables.get(family);
  if (entry === undefined || entry.users === 0) {
    entry = { users: 0, created: mangleTableUnused(family).catch(() => false) };
    tables.set(family, entry);
  }
  entry.users += 1;
  await entry.created;
}

async function releaseTable(family: 4 | 6): Promise<void> {
  const entry = tables.get(family);
  if (entry === undefined || entry.users === 0) return;
  entry.users -= 1;
  if (entry.users === 0 && await entry.created) await removeEmptyMangleTable(family);
}

/** Installed rules; close() removes them. */
export class SynRules {
  readonly options: SynRulesOptions;
  /** Rules and chains of an earlier run of this instance removed before installing. */
  readonly staleRemoved: number;
  /** Families whose `mangle` table this group uses (released at close; see `tables`). */
  readonly #families: readonly (4 | 6)[];
  #closed = false;

  private constructor(options: SynRulesOptions, staleRemoved: number, families: readonly (4 | 6)[]) {
    this.options = options;
    this.staleRemoved = staleRemoved;
    this.#families = families;
  }

  /** Removes this instance's stale rules, then installs. A failure removes what was installed. */
  static async install(options: SynRulesOptions): Promise<SynRules> {
    validate(options);
    const owners = (await synRuleOwners()).get(options.instance) ?? new Set<number>();
    const me = options.owner ?? process.pid;
    const live = [...owners].filter((pid) => pid !== me && alive(pid));
    if (live.length > 0) {
      throw new SynRulesError(`early-SYN rules: instance '${options.instance}' belongs to the running process ${live.join(', ')}; give this relay another instance`);
    }
    const stale = await removeSynRules(options.instance);
    const { main, steer } = chainNames(options.instance);
    const families = ([4, 6] as const).filter((family) => ruleArgs(options, family).length > 0);
    for (const family of families) await useTable(family);
    try {
      for (const family of families) {
        const rules = ruleArgs(options, family);
        const cmd = commandFor(family);
        await runChecked(cmd, ['-w', '5', '-t', TABLE, '-N', main]);
        await runChecked(cmd, ['-w', '5', '-t', TABLE, '-N', steer]);
        for (const args of rules) await runChecked(cmd, ['-w', '5', '-t', TABLE, ...args]);
      }
    } catch (err) {
      await removeSynRules(options.instance).catch(() => undefined);
      for (const family of families) await releaseTable(family).catch(() => undefined);
      throw err;
    }
    return new SynRules(options, stale, families);
  }

  /** Removes the rules (idempotent); the last group of this process to close removes the table it made. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await removeSynRules(this.options.instance);
    } finally {
      for (const family of this.#families) await releaseTable(family);
    }
  }
}
