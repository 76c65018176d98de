/**
 * Early SYN as the supervisor runs it (issue 8 §1, §4): the iptables rules and one
 * SynCapture per worker, each on its own queue, delivering events straight to worker k's
 * MessagePort. The captures live in the supervisor, which outlives the workers: a worker
 * that dies does not take a queue reader with it (a reader that dies with its socket open
 * would hold SYNs), and its replacement gets the events through retarget().
 *
 * Capture is limited to what the relay handles: the bound address and port of each -L
 * listener, and the --intercept destinations (on --intercept-iface). Not --accept: a
 * relay header names the target only after the handshake.
 *
 * Names: two relays on one host must never touch each other's rules. The instance is
 * derived after listening, from the bound port (`f<port>` for the -L listeners, `i_<name>`
 * for --intercept, whose instance is already unique per host), and every rule records the
 * owner's pid. install() refuses an instance whose owner is alive; at start, rules whose
 * owners are all dead are removed (a relay killed by SIGKILL leaves them, with
 * --queue-bypass, so they cost a lookup, not a SYN).
 *
 * When it cannot run (no CAP_NET_ADMIN, no iptables, several workers without the steering
 * program, a queue taken), start() says why and the relay runs without it.
 */
import { createHash } from 'node:crypto';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type { AddressInfo } from 'node:net';
import type { InterceptConfig } from './intercept-spec.js';
import { SynCapture } from './syn-capture.js';
import { PROBE_ADDRESS } from './syn-capture-protocol.js';
import { removeOrphanedSynRules, SynRules, type SynCaptureRule } from './syn-rules.js';
import { CAP_NET_ADMIN, hasEffectiveCapability } from '../sys/index.js';
import { EarlySynUnavailableError, errorCode } from '../errors.js';

export interface EarlySynPlan {
  readonly workers: number;
  /** Bound -L listeners (after listening: port 0 is a port now). */
  readonly forwards: readonly AddressInfo[];
  readonly intercept: InterceptConfig | undefined;
  /** How the listeners steer: early SYN needs steer() to name the accepting worker. */
  readonly steering: string;
  /** The queue probe's captured port on PROBE_ADDRESS (src/intercept/queue-probe.ts), queued like a -L listener's. */
  readonly probePort?: number;
}

export interface EarlySynStats {
  readonly packets: number;
  readonly syns: number;
  readonly overruns: number;
  /** Of the SYNs, the queue probe's. */
  readonly probes: number;
}

/** Queue numbers: a block of `stride` per relay, chosen from its instance, moved on if taken. */
const QUEUE_FIRST = 1024;
const QUEUE_TRIES = 8;

export class EarlySyn {
  readonly #rules: SynRules[];
  readonly #captures: SynCapture[];
  readonly queueBase: number;
  readonly orphansRemoved: readonly string[];
  /** Worker k's end of its events channel: send it to worker k (once). */
  readonly workerPorts: readonly MessagePort[];

  private constructor(rules: SynRules[], captures: SynCapture[], queueBase: number, orphansRemoved: readonly string[], workerPorts: MessagePort[]) {
    this.workerPorts = workerPorts;
    this.#rules = rules;
    this.#captures = captures;
    this.queueBase = queueBase;
    this.orphansRemoved = orphansRemoved;
  }

  /**
   * Binds the queues (one per worker, events to `workerPorts[k]`'s other end), then
   * installs the rules. Throws EarlySynUnavailableError saying why it cannot run; nothing
   * is left behind.
   */
  static async start(plan: EarlySynPlan): Promise<EarlySyn> {
    if (hasEffectiveCapability(CAP_NET_ADMIN) === false) {
      throw new EarlySynUnavailableError('early SYN needs CAP_NET_ADMIN (NFQUEUE and iptables rules); running without it');
    }
    if (plan.workers > 1 && plan.steering !== 'program') {
      throw new EarlySynUnavailableError(`early SYN needs the steering program with ${plan.workers} workers (steering is ${plan.steering}: no CAP_BPF?); running without it`);
    }
    const groups = ruleGroups(plan);
    if (groups.length === 0) throw new EarlySynUnavailableError('nothing to capture: early SYN serves -L and --intercept listeners');
    let orphans: string[];
    try {
      orphans = await removeOrphanedSynRules();
    } catch (err) {
      throw unavailable(err);
    }
    const captures: SynCapture[] = [];
    const rules: SynRules[] = [];
    const stride = Math.max(64, plan.workers);
    const slots = Math.floor((0x10000 - QUEUE_FIRST) / stride);
    const seed = createHash('sha256').update(groups.map((g) => g.instance).join(',')).digest().readUInt32BE(0);
    let base = -1;
    let workerPorts: MessagePort[] = [];
    try {
      for (let attempt = 0; base < 0; attempt++) {
        const candidate = QUEUE_FIRST + ((seed + attempt) % slots) * stride;
        const { forWorkers, forCaptures } = eventChannels(plan.workers);
        try {
          for (let k = 0; k < plan.workers; k++) {
            captures.push(await SynCapture.start({
              queueNum: candidate + k, port: forCaptures[k] as MessagePort, ...(plan.probePort === undefined ? {} : { probePort: plan.probePort }),
            }));
          }
          base = candidate;
          workerPorts = forWorkers;
        } catch (err) {
          // A queue held by another process (the kernel refuses the bind): the next block.
          await Promise.allSettled(captures.map((c) => c.stop()));
          captures.length = 0;
          for (const p of forWorkers) p.close();
          if (attempt + 1 >= QUEUE_TRIES) throw err;
        }
      }
      const probe: RuleGroup[] = plan.probePort === undefined ? []
        : [{ instance: `p${plan.probePort}`, capture: [{ cidr: `${PROBE_ADDRESS}/32`, ports: { first: plan.probePort, last: plan.probePort } }], iface: 'lo' }];
      for (const group of [...groups, ...probe]) {
        rules.push(await SynRules.install({ instance: group.instance, workers: plan.workers, queueBase: base, capture: group.capture,
          ...(group.iface === undefined ? {} : { iface: group.iface }) }));
      }
    } catch (err) {
      await Promise.allSettled(rules.map((r) => r.close()));
      await Promise.allSettled(captures.map((c) => c.stop()));
      throw unavailable(err);
    }
    return new EarlySyn(rules, captures, base, orphans, workerPorts);
  }

  /** Worker `index` was replaced: returns the new worker's end of a fresh channel, whose other end now gets its events. */
  retarget(index: number): MessagePort {
    const channel = new MessageChannel();
    this.#captures[index]?.retarget(channel.port2);
    return channel.port1;
  }

  /** For tests of fail-open: terminates worker `index`'s reader as a crash would. */
  async killReader(index: number): Promise<void> {
    await this.#captures[index]?.kill();
  }

  stats(): EarlySynStats {
    let packets = 0;
    let syns = 0;
    let overruns = 0;
    let probes = 0;
    for (const c of this.#captures) {
      const s = c.stats();
      packets += s.packets;
      syns += s.syns;
      overruns += s.overruns;
      probes += s.probes;
    }
    return { packets, syns, overruns, probes };
  }

  /** Removes the rules first (new SYNs pass untouched), then ends the readers. */
  async stop(): Promise<void> {
    await Promise.allSettled(this.#rules.map((r) => r.close()));
    await Promise.allSettled(this.#captures.map((c) => c.stop()));
  }
}

/** A fresh pair of ports per worker: port1 for the worker, port2 for the capture. */
export function eventChannels(workers: number): { forWorkers: MessagePort[]; forCaptures: MessagePort[] } {
  const channels = Array.from({ length: workers }, () => new MessageChannel());
  return { forWorkers: channels.map((c) => c.port1), forCaptures: channels.map((c) => c.port2) };
}

interface RuleGroup {
  readonly instance: string;
  readonly capture: SynCaptureRule[];
  readonly iface: string | undefined;
}

/** One rule group for the -L listeners (any interface), one for --intercept (its interface). */
export function ruleGroups(plan: Pick<EarlySynPlan, 'forwards' | 'intercept'>): RuleGroup[] {
  const groups: RuleGroup[] = [];
  const forwards = plan.forwards.flatMap((a): SynCaptureRule[] => {
    const ports = { first: a.port, last: a.port };
    if (a.address === '::') return [{ cidr: '0.0.0.0/0', ports }, { cidr: '::/0', ports }];
    if (a.address === '0.0.0.0') return [{ cidr: '0.0.0.0/0', ports }];
    return [{ cidr: a.address.includes(':') ? `${a.address}/128` : `${a.address}/32`, ports }];
  });
  const first = plan.forwards[0];
  if (first !== undefined) groups.push({ instance: `f${first.port}`, capture: forwards, iface: undefined });
  const icpt = plan.intercept;
  if (icpt !== undefined) {
    groups.push({ instance: `i_${icpt.instance}`, capture: icpt.rules.map((r) => ({ cidr: r.cidr, ports: r.ports })), iface: icpt.iface });
  }
  return groups;
}

function unavailable(err: unknown): Error {
  if (err instanceof EarlySynUnavailableError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new EarlySynUnavailableError(`early SYN could not start (${errorCode(err)}: ${message}); running without it`, { cause: err });
}
