import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { addressOf, type Lab } from '../lab/index.js';
import { RelayProcess } from './relay-process.js';

export const RC_LISTEN_PORT = 8080;
export const RS_ACCEPT_PORT = 7000;

export interface LabRelays {
  readonly rc: RelayProcess;
  readonly rs: RelayProcess;
  /** http://R_C/... : a URL on the server's path address, reached through the relays. */
  url(file: string): string;
  stop(): Promise<void>;
}

/** The naive split (the paper's 'split'): every improvement off, on both relays. */
export const NAIVE_SPLIT_ARGS: readonly string[] = ['--early-syn', 'off', '--pool', 'off', '--turbo', 'off'];

/**
 * The paper's relay pair in a lab: R_S in 'rs' accepting from R_C and allowed to
 * connect only to the server's subnet, R_C in 'rc' forwarding RC_LISTEN_PORT to the
 * server's port `serverPort` through R_S. A fresh key is written to `dir` (mode 600).
 * `earlySyn`: --early-syn on|off for both (unset: the relays' default, on as root);
 * `relayArgs`: more options for both relays; `rcArgs`: for R_C only.
 */
export async function startLabRelays(lab: Lab, dir: string, serverPort: number,
  options: {
    readonly earlySyn?: boolean; readonly relayArgs?: readonly string[]; readonly rcArgs?: readonly string[];
    /** R_C's -L port and R_S's --accept port (defaults RC_LISTEN_PORT, RS_ACCEPT_PORT): another pair runs beside on others. */
    readonly rcPort?: number; readonly rsPort?: number;
  } = {}): Promise<LabRelays> {
  // Early SYN is on by default where the relay may use it (root in the lab): say which.
  const early = options.earlySyn === undefined ? [] : ['--early-syn', options.earlySyn ? 'on' : 'off'];
  const extra = [...early, ...(options.relayArgs ?? [])];
  const rcPort = options.rcPort ?? RC_LISTEN_PORT;
  const rsPort = options.rsPort ?? RS_ACCEPT_PORT;
  const keyFile = join(dir, `relay-${String(rsPort)}.key`);
  writeFileSync(keyFile, randomBytes(32), { mode: 0o600 });
  const rsAddr = addressOf('rs', 'rc');
  const rcAddr = addressOf('rc', 'client');
  const started: RelayProcess[] = [];
  const stop = async (): Promise<void> => { await Promise.all(started.map((r) => r.stop())); };
  try {
    const rs = new RelayProcess(['--accept', `${rsAddr}:${rsPort}`, '--key-file', keyFile, '--allow', '198.18.3.0/24', ...extra],
      { spawner: (cmd, args) => lab.spawn('rs', cmd, args) });
    started.push(rs);
    await rs.ready();
    const rc = new RelayProcess(['-L', `${rcAddr}:${rcPort}:${addressOf('server', 'path')}:${serverPort}`,
      '--peer', `rs=${rsAddr}:${rsPort}`, '--route', '198.18.3.0/24=rs', '--key-file', keyFile, ...extra, ...(options.rcArgs ?? [])],
    { spawner: (cmd, args) => lab.spawn('rc', cmd, args) });
    started.push(rc);
    await rc.ready();
    return { rc, rs, url: (file) => `http://${rcAddr}:${rcPort}/${file}`, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface TransparentRelayOptions {
  /** --intercept-mode of both relays (default redirect). */
  readonly mode?: 'redirect' | 'tproxy';
  /**
   * true: R_C carries intercepted connections to R_S as a peer (the authenticated
   * header); false (default): R_C connects straight to the original destination and R_S,
   * a router on the path, intercepts that leg in turn (a split with no header).
   */
  readonly peer?: boolean;
  /** Also intercept the server's IPv6 subnet (the lab must be created with ipv6: true). */
  readonly ipv6?: boolean;
  /** Extra arguments per relay (e.g. --log-level debug). */
  readonly rcArgs?: readonly string[];
  readonly rsArgs?: readonly string[];
  /**
   * Intercept only connections to this port of the server's subnets (default: every
   * port), so that other ways to the server (a routed 'nosplit', another relay pair) run
   * beside. Give `listenPort` too when another transparent pair runs in the lab.
   */
  readonly port?: number;
  /** --intercept-listen of both relays (default 7080); the instance is named after it. */
  readonly listenPort?: number;
}

/** The server's subnets: what the transparent relays intercept. */
export const SERVER_SUBNET = '198.18.3.0/24';
export const SERVER_SUBNET6 = 'fd00:7473:3::/64';

/**
 * The paper's relays as routers on the path (section 3): R_C in 'rc' intercepts the
 * client's connections to the server's subnet as they arrive from the client, R_S in
 * 'rs' those arriving from rc. A client that connects to the server's own address is
 * split, with no relay address in sight. Needs root (the lab's namespaces are).
 */
export async function startTransparentRelays(lab: Lab, dir: string, options: TransparentRelayOptions = {}): Promise<{
  readonly rc: RelayProcess;
  readonly rs: RelayProcess;
  readonly rcArgs: readonly string[];
  readonly rsArgs: readonly string[];
  stop(): Promise<void>;
}> {
  const subnets = [SERVER_SUBNET, ...(options.ipv6 === true ? [SERVER_SUBNET6] : [])];
  const intercept = (iface: string): string[] => [
    ...subnets.flatMap((s) => ['--intercept', options.port === undefined ? s : `${s}:${String(options.port)}`]),
    '--intercept-iface', iface, '--intercept-mode', options.mode ?? 'redirect',
    ...(options.listenPort === undefined ? [] : ['--intercept-listen', String(options.listenPort)]),
  ];
  const rsAddr = addressOf('rs', 'rc');
  let rsArgs = [...intercept('rc'), ...(options.rsArgs ?? [])];
  let rcArgs = [...intercept('client'), ...(options.rcArgs ?? [])];
  if (options.peer === true) {
    const keyFile = join(dir, 'relay.key');
    writeFileSync(keyFile, randomBytes(32), { mode: 0o600 });
    rsArgs = [...rsArgs, '--accept', `${rsAddr}:${RS_ACCEPT_PORT}`, '--key-file', keyFile, ...subnets.flatMap((s) => ['--allow', s])];
    rcArgs = [...rcArgs, '--peer', `rs=${rsAddr}:${RS_ACCEPT_PORT}`, ...subnets.flatMap((s) => ['--route', `${s}=rs`]), '--key-file', keyFile];
  }
  const started: RelayProcess[] = [];
  // 20 s before SIGKILL: a transparent relay removes its nft table and rules on the way out,
  // and a SIGKILL on a loaded host would leave them (the tests check that nothing is left).
  const stop = async (): Promise<void> => { await Promise.all(started.map((r) => r.stop(20_000))); };
  try {
    const rs = new RelayProcess(rsArgs, { spawner: (cmd, args) => lab.spawn('rs', cmd, args) });
    started.push(rs);
    await rs.ready();
    const rc = new RelayProcess(rcArgs, { spawner: (cmd, args) => lab.spawn('rc', cmd, args) });
    started.push(rc);
    await rc.ready();
    return { rc, rs, rcArgs, rsArgs, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
