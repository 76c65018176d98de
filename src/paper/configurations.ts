/**
 * The paper's configurations (§4), one row each: its name (fixed: scripts and the
 * report use it), the paper's own name, the model of its path (model.ts), the links its
 * traffic crosses, and what it still needs before it can run. The runner, the report
 * and the figures all read this table; a new configuration is a new row.
 */
import type { LinkName } from '../lab/index.js';
import type { PathModel } from './model.js';

export interface Configuration {
  readonly name: string;
  /** As the paper's figures label it. */
  readonly paperName: string;
  readonly description: string;
  readonly path: PathModel;
  /** The emulated links a download crosses (for its lateness). */
  readonly links: readonly LinkName[];
  /** Why it cannot run yet (an open issue); undefined when it can. */
  readonly needs?: string;
}

const PATH_LINKS: readonly LinkName[] = ['client-rc', 'rc-rs', 'rs-server'];

export const CONFIGURATIONS = [
  {
    name: 'e2e', paperName: 'e2e', links: ['internet'],
    description: 'client -> server over the direct "internet" link',
    path: { kind: 'direct', via: 'internet' },
  },
  {
    name: 'nosplit', paperName: 'Cloud NoSplit', links: PATH_LINKS,
    description: 'routed through rc and rs (plain forwarding), one TCP connection end to end',
    path: { kind: 'direct', via: 'path' },
  },
  {
    name: 'ssh', paperName: 'Baseline', links: PATH_LINKS,
    description: 'OpenSSH `ssh -L` on rc to sshd on rs, the session set up before the runs',
    // OpenSSH's CHAN_TCP_PACKET_DEFAULT: a forwarded channel's packets carry up to 32 KB.
    path: { kind: 'split', rcLeg: 'pooled', rcTarget: 'at-accept', rsTarget: 'first-bytes', dataWaitsForRs: true, turboRcRs: false, wholePacketBytes: 32 * 1024 },
  },
  {
    name: 'split', paperName: 'KTCP +TP', links: PATH_LINKS,
    description: 'tcpsplit relays, every improvement off (nothing is created per connection: the paper\'s +TP is built in)',
    path: { kind: 'split', rcLeg: 'at-accept', rcTarget: 'at-accept', rsTarget: 'first-bytes', dataWaitsForRs: false, turboRcRs: false },
  },
  {
    name: 'split+es', paperName: 'KTCP +TP+ES', links: PATH_LINKS,
    description: 'early SYN at both relays, transparent (R_S starts its leg at the SYN of R_C\'s)',
    path: { kind: 'split', rcLeg: 'at-syn', rcTarget: 'at-syn', rsTarget: 'syn', dataWaitsForRs: false, turboRcRs: false },
  },
  {
    name: 'split+es+cp', paperName: 'KTCP +TP+ES+CP', links: PATH_LINKS,
    description: 'early SYN and the pre-established connection pool: the pooled leg taken, and the target sent, at the SYN',
    path: { kind: 'split', rcLeg: 'pooled', rcTarget: 'at-syn', rsTarget: 'first-bytes', dataWaitsForRs: false, turboRcRs: false },
  },
  {
    name: 'full', paperName: 'KTCP', links: PATH_LINKS,
    description: 'early SYN, the pool and Turbo-Start (run in a phase of its own: its initial windows are routes that every rc-rs leg would get)',
    path: { kind: 'split', rcLeg: 'pooled', rcTarget: 'at-syn', rsTarget: 'first-bytes', dataWaitsForRs: false, turboRcRs: true },
  },
] as const satisfies readonly Configuration[];

export type ConfigName = (typeof CONFIGURATIONS)[number]['name'];

export const CONFIG_NAMES: readonly ConfigName[] = CONFIGURATIONS.map((c) => c.name);

export function configuration(name: ConfigName): Configuration {
  const c = CONFIGURATIONS.find((x) => x.name === name);
  if (c === undefined) throw new RangeError(`no configuration ${name}`);
  return c;
}

export function isConfigName(name: string): name is ConfigName {
  return (CONFIG_NAMES as readonly string[]).includes(name);
}

/** The configurations that run today. */
export function runnableConfigs(): ConfigName[] {
  return CONFIGURATIONS.filter((c: Configuration) => c.needs === undefined).map((c) => c.name);
}
