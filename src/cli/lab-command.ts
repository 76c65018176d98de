/**
 * `tcpsplit lab up|exec|status|down`: the emulated WAN (src/lab) from the shell.
 */
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { LabConfigError, LabNotUpError } from '../errors.js';
import { LAB_NODES, LINK_NAMES, type LabNode } from '../lab/address-plan.js';
import { daemonLogPath, queryStatus, startDaemon, stopLab } from '../lab/daemon-client.js';
import { ownerAlive, readState, DEFAULT_PREFIX, verifyPrefix } from '../lab/lab-state.js';
import { applyLinkFlag, scaleDelays } from '../lab/link-config.js';
import { loadProfile } from '../lab/profile-file.js';
import { formatAddressPlan, formatProfile, formatStatus, formatWeb } from '../lab/status-format.js';
import { CORE_TOOLS, PART_TOOLS, requireRoot, requireTools } from '../lab/tools.js';
import { namespaceName, topologyExists } from '../lab/topology.js';

const LAB_HELP = `tcpsplit lab: an emulated WAN on this machine

The paper's four hosts as network namespaces, joined by TUN links that tcpsplit's own
emulator delays, rate-limits and drops on:

  client ==(client-rc)== rc ==(rc-rs)== rs ==(rs-server)== server
     \\______________________(internet)______________________/

Commands (each takes --help):
  tcpsplit lab up [--profile paper|none|FILE] [--link LINK:key=value,...] [--delay-scale F] [--prefix P]
  tcpsplit lab exec [--prefix P] NODE -- CMD [ARGS...]
  tcpsplit lab status [--prefix P] [--json]
  tcpsplit lab down [--prefix P]
  tcpsplit lab paper [--quick] [--runs N] [--sizes LIST] [--configs LIST] [--cc cubic|bbr] [--out DIR]
                                 the paper's evaluation (Figures 3, 4) beside the RTT model

Needs root. Names carry the prefix (default ${DEFAULT_PREFIX}): namespaces ${DEFAULT_PREFIX}-client,
${DEFAULT_PREFIX}-rc, ${DEFAULT_PREFIX}-rs, ${DEFAULT_PREFIX}-server. See docs/lab.md.
`;

const UP_HELP = `tcpsplit lab up: create the lab and leave it running in the background

Options:
  --profile NAME|FILE   paper (default: the paper's RTTs, client-rc 32.7 ms, rc-rs 215 ms,
                        rs-server 26 ms, internet 273.7 ms), none (no delay), or a YAML/JSON file
  --link LINK:SETTINGS  override one link; repeatable. LINK is one of ${LINK_NAMES.join(', ')}.
                        SETTINGS: delay=107.5ms rtt=215ms jitter=1ms rate=100mbit burst=15kb
                        queue=1000 (packets) or queue=256kb (bytes) loss=0.1%
                        prefix a key with up. or down. for one direction (up = away from client)
  --delay-scale F       multiply the profile's delays and jitters by F before --link applies (e.g. 0.1)
  --ipv6                also give every node the IPv6 plan (ULA fd00:7473:N::1 and ::2 on link N,
                        mirroring 198.18.N.1 and .2); off by default (no IPv6 packets at all)
  --no-web              do not start the web server. By default nginx runs in 'server' on port
                        80 with the paper's files 10kb, 100kb, 1mb and 10mb:
                        tcpsplit lab exec client -- curl -o /dev/null http://198.18.3.2/1mb
  --prefix P            name prefix: a letter, then up to 7 of [a-z0-9] (default ${DEFAULT_PREFIX}); labs with different
                        prefixes run side by side
  -h, --help

A stale lab with the same prefix (its daemon crashed) is removed first.

Examples:
  tcpsplit lab up
  tcpsplit lab up --link rc-rs:rate=100mbit,loss=0.1% --link internet:rate=100mbit,loss=0.1%
  tcpsplit lab up --profile none --link client-rc:rtt=10ms,down.rate=50mbit
  tcpsplit lab up --profile ./wan.yaml --prefix t2

A profile file:
  base: paper
  links:
    rc-rs: { rate: 100mbit, queue: 500 }
    internet: { rate: 100mbit, down: { loss: 0.5% } }
`;

const EXEC_HELP = `tcpsplit lab exec: run a command in a lab node's namespace

Usage: tcpsplit lab exec [--prefix P] NODE -- CMD [ARGS...]
NODE is one of ${LAB_NODES.join(', ')}. The exit code is the command's.

Examples:
  tcpsplit lab exec client -- ping -c 3 198.18.3.2          # through rc and rs
  tcpsplit lab exec client -- ping -c 3 198.18.4.2          # the direct internet link
  tcpsplit lab exec server -- iperf3 -s -D
  tcpsplit lab exec client -- iperf3 -c 198.18.3.2 -t 5
  tcpsplit lab exec rc -- ip addr
`;

const STATUS_HELP = `tcpsplit lab status: namespaces, addresses, and each link direction's
configuration and live counters (packets, bytes, drops by reason: loss, queue (tail
drop behind the rate cap), buf (emulator buffer full), write (device refused), big
(a packet longer than the emulator's 2048-byte slots); how late
packets left versus their due time)

Options: --prefix P, --json (machine-readable)
Example: tcpsplit lab status --prefix t2
`;

const DOWN_HELP = `tcpsplit lab down: stop the lab's daemon and remove its namespaces, processes
and devices. Only names with the prefix are touched; only the pid recorded in the
state file is signalled, and only while its /proc cmdline still matches.

Options: --prefix P
Example: tcpsplit lab down --prefix t2
`;

function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

const HELP = { help: { type: 'boolean', short: 'h' } } as const;

/** parseArgs, with its errors as LabConfigError pointing at the command's --help. */
function parse<T>(command: string, parseFn: () => T): T {
  try {
    return parseFn();
  } catch (err) {
    throw new LabConfigError(`${err instanceof Error ? err.message : String(err)} (see tcpsplit lab ${command} --help)`);
  }
}

async function up(args: string[]): Promise<number> {
  const { values } = parse('up', () => parseArgs({
    args, strict: true,
    options: {
      ...HELP, prefix: { type: 'string' }, profile: { type: 'string' }, link: { type: 'string', multiple: true },
      'delay-scale': { type: 'string' }, ipv6: { type: 'boolean' }, 'no-web': { type: 'boolean' },
    },
  }));
  if (values.help === true) { out(UP_HELP); return 0; }
  const prefix = verifyPrefix(values.prefix ?? DEFAULT_PREFIX);
  let profile = loadProfile(values.profile ?? 'paper');
  const scale = values['delay-scale'];
  if (scale !== undefined) {
    if (!/^\d+(\.\d+)?$/.test(scale)) throw new LabConfigError(`--delay-scale '${scale}' is not a number`);
    profile = scaleDelays(profile, Number(scale));
  }
  for (const flag of values.link ?? []) profile = applyLinkFlag(profile, flag);
  requireRoot();
  requireTools([...CORE_TOOLS, ...PART_TOOLS]);
  const pid = await startDaemon(prefix, profile, { ipv6: values.ipv6 === true, web: values['no-web'] !== true });
  const state = readState(prefix);
  const web = state === undefined ? undefined : (await queryStatus(state)).web;
  const dflt = prefix === DEFAULT_PREFIX;
  out(`lab '${prefix}' is up (daemon pid ${pid}, log ${daemonLogPath(prefix)})
namespaces: ${LAB_NODES.map((n) => namespaceName(prefix, n)).join(' ')}

${formatAddressPlan()}

${formatProfile(profile)}
${web === undefined ? '' : `\n${formatWeb(web, prefix, dflt)}\n`}
Try: tcpsplit lab exec${prefix === DEFAULT_PREFIX ? '' : ` --prefix ${prefix}`} client -- ping -c 3 198.18.3.2
     tcpsplit lab status${prefix === DEFAULT_PREFIX ? '' : ` --prefix ${prefix}`}
     tcpsplit lab down${prefix === DEFAULT_PREFIX ? '' : ` --prefix ${prefix}`}`);
  return 0;
}

async function exec(args: string[]): Promise<number> {
  let prefix = DEFAULT_PREFIX;
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '-h' || a === '--help') { out(EXEC_HELP); return 0; }
    if (a === '--prefix') { prefix = args[++i] ?? ''; continue; }
    if (a.startsWith('--prefix=')) { prefix = a.slice('--prefix='.length); continue; }
    if (a.startsWith('-')) throw new LabConfigError(`lab exec: unknown option '${a}' (see tcpsplit lab exec --help)`);
    break;
  }
  const node = args[i];
  if (node === undefined || !(LAB_NODES as readonly string[]).includes(node)) {
    throw new LabConfigError(`lab exec: expected a node (${LAB_NODES.join(', ')}), got ${node === undefined ? 'nothing' : `'${node}'`}`);
  }
  // Options may also stand between NODE and '--' (lab exec client --prefix t2 -- ...).
  for (i++; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '--') { i++; break; }
    if (a === '--prefix') { prefix = args[++i] ?? ''; continue; }
    if (a.startsWith('--prefix=')) { prefix = a.slice('--prefix='.length); continue; }
    if (a.startsWith('-')) throw new LabConfigError(`lab exec: unknown option '${a}'; put the command after '--' (see tcpsplit lab exec --help)`);
    break;
  }
  verifyPrefix(prefix);
  const rest = args.slice(i);
  const [cmd, ...cmdArgs] = rest;
  if (cmd === undefined) throw new LabConfigError('lab exec: no command (e.g. tcpsplit lab exec client -- ping -c 3 198.18.3.2)');
  requireRoot();
  const ns = namespaceName(prefix, node as LabNode);
  if (!topologyExists(prefix)) throw new LabNotUpError(`no lab with prefix '${prefix}' ('tcpsplit lab up${prefix === DEFAULT_PREFIX ? '' : ` --prefix ${prefix}`}' first)`);
  const state = readState(prefix);
  if (state === undefined || !ownerAlive(state)) {
    throw new LabNotUpError(`lab '${prefix}' is stale (its emulator is gone, so its links carry nothing); 'tcpsplit lab down --prefix ${prefix}' removes it`);
  }
  const child = spawn('ip', ['netns', 'exec', ns, cmd, ...cmdArgs], { stdio: 'inherit' });
  const forward = (signal: NodeJS.Signals) => () => { child.kill(signal); };
  const onInt = forward('SIGINT');
  const onTerm = forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  return new Promise((resolve) => {
    child.once('error', (err) => { process.stderr.write(`tcpsplit lab exec: ${err.message}\n`); resolve(127); });
    child.once('exit', (code, signal) => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      resolve(code ?? 128 + (signal === null ? 0 : ({ SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal] ?? 1));
    });
  });
}

async function status(args: string[]): Promise<number> {
  const { values } = parse('status', () => parseArgs({ args, strict: true, options: { ...HELP, prefix: { type: 'string' }, json: { type: 'boolean' } } }));
  if (values.help === true) { out(STATUS_HELP); return 0; }
  const prefix = verifyPrefix(values.prefix ?? DEFAULT_PREFIX);
  const state = readState(prefix);
  if (state === undefined) {
    if (topologyExists(prefix)) {
      throw new LabNotUpError(`lab '${prefix}': namespaces exist but no state: a crashed lab; 'tcpsplit lab down --prefix ${prefix}' removes it`);
    }
    throw new LabNotUpError(`no lab with prefix '${prefix}'`);
  }
  if (!ownerAlive(state)) {
    throw new LabNotUpError(`lab '${prefix}' is stale: its owner pid ${state.ownerPid} is gone; 'tcpsplit lab down --prefix ${prefix}' (or the next 'lab up') removes it`);
  }
  const s = await queryStatus(state);
  out(values.json === true ? JSON.stringify(s, null, 2) : formatStatus(s, prefix === DEFAULT_PREFIX));
  return 0;
}

async function down(args: string[]): Promise<number> {
  const { values } = parse('down', () => parseArgs({ args, strict: true, options: { ...HELP, prefix: { type: 'string' } } }));
  if (values.help === true) { out(DOWN_HELP); return 0; }
  const prefix = verifyPrefix(values.prefix ?? DEFAULT_PREFIX);
  requireRoot();
  const r = await stopLab(prefix);
  if (!r.removed && r.stoppedPid === undefined) {
    out(`no lab with prefix '${prefix}': nothing to do`);
  } else {
    out(`lab '${prefix}' is down${r.stoppedPid === undefined ? '' : ` (stopped daemon pid ${r.stoppedPid})`}`);
  }
  return 0;
}

export async function runLabCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'up': return up(rest);
    case 'exec': return exec(rest);
    case 'status': return status(rest);
    case 'down': return down(rest);
    // Loaded only when asked: the paper's charting libraries are large.
    case 'paper': return (await import('./paper-command.js')).runPaperCommand(rest);
    case undefined: case '-h': case '--help': case 'help':
      out(LAB_HELP);
      return sub === undefined ? 2 : 0;
    default:
      throw new LabConfigError(`unknown lab command '${sub}': expected up, exec, status, down or paper (see tcpsplit lab --help)`);
  }
}
