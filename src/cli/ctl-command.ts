/**
 * `tcpsplit ctl`: the control API's client (docs/control.md). Tables for people,
 * --json for scripts.
 */
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { requestUnix } from '../control/unix-http.js';
import { DEFAULT_CONTROL_SOCKET } from '../config/load-config.js';
import { formatConnections, formatErrors, formatPeers, formatStatus, table } from '../control/view-format.js';
import type { RelayView } from '../control/relay-view.js';
import type { ConfigChange } from '../config/config-diff.js';
import { ConfigError, ControlRequestError, RestartRequiredError, TcpsplitError } from '../errors.js';

export const CTL_HELP = `tcpsplit ctl: read and change a running relay (its control API, a unix socket)

Usage: tcpsplit ctl [--socket PATH] [--json] COMMAND [ARGS]

Commands
  status              workers, peers and their pools, switches, totals, last errors
  peers               each peer: pool (ready, watermarks, takes, misses, stale),
                      RTT and cwnd of a leg to it (TCP_INFO), Turbo-Start
  connections         open connections, longest-lived first, with bytes so far
  errors              connections that ended with an error code, newest first
  config              the running config, and the run-time changes in force
  config --diff       how the running config differs from the config file
  set KEY=VALUE ...   change options now, in every worker at once; KEY is a YAML key
                      (the long option name), VALUE as in the YAML file. All or
                      nothing: a bad value changes nothing, and says which
  unset KEY ...       drop run-time changes: back to the file's value
  reload              re-read the config file, as SIGHUP (drops run-time changes)

Options
  --socket PATH       the relay's --control socket (default ${DEFAULT_CONTROL_SOCKET})
  --json              print the API's JSON instead of tables
  -h, --help          this text

Run-time changes last until the file is reloaded or the relay restarts; put them in
the file to keep them. Restart-only options (workers, backlog, intercept, control,
max-clock-skew) are refused with TCPSPLIT_ERR_RESTART_REQUIRED.

Examples
  tcpsplit ctl status
  tcpsplit ctl set pool-low=8 pool-high=32          # deeper pools, every worker
  tcpsplit ctl set early-syn=off                    # stop capturing SYNs now
  tcpsplit ctl set 'allow=[10.0.0.0/8, 192.168.0.0/16]' log-level=debug
  tcpsplit ctl set 'peer={rs: 198.18.2.2:7000, rs2: 198.18.6.2:7000}'
  tcpsplit ctl unset pool-low pool-high
  tcpsplit ctl config --diff
  tcpsplit ctl --json connections | jq '.[0]'
  tcpsplit ctl --socket /run/tcpsplit/rs.sock peers
`;

export async function runCtlCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true, strict: true,
    options: { socket: { type: 'string' }, json: { type: 'boolean' }, diff: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  const [command, ...args] = positionals;
  if (values.help === true || command === undefined) {
    process.stdout.write(CTL_HELP);
    return command === undefined && values.help !== true ? 2 : 0;
  }
  const socket = values.socket ?? DEFAULT_CONTROL_SOCKET;
  const json = values.json === true;
  const call = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const r = await requestUnix(socket, method, path, body);
    if (r.status === 200) return r.body;
    const e = (r.body as { error?: { code?: string; message?: string } } | undefined)?.error;
    const message = e?.message ?? `HTTP ${String(r.status)}`;
    if (e?.code === RestartRequiredError.code) throw new RestartRequiredError(message);
    if (e?.code === ConfigError.code) throw new ConfigError(message);
    if (e?.code !== undefined && e.code.startsWith('TCPSPLIT_ERR_')) throw new TcpsplitError(e.code, message);
    throw new ControlRequestError(message);
  };
  const print = (data: unknown, text: () => string): void => {
    process.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : text());
  };
  const view = async (): Promise<RelayView> => (await call('GET', '/v1/view')) as RelayView;
  switch (command) {
    case 'status': { const v = await view(); print(v, () => formatStatus(v)); return 0; }
    case 'peers': { const v = await view(); print(v.peers, () => `${formatPeers(v.peers)}\n`); return 0; }
    case 'connections': { const v = await view(); print(v.connections, () => `${formatConnections(v.connections, v.open)}\n`); return 0; }
    case 'errors': { const v = await view(); print(v.recentErrors, () => `${formatErrors(v.recentErrors)}\n`); return 0; }
    case 'config': {
      if (values.diff === true) {
        const d = (await call('GET', '/v1/config/diff')) as { changes: ConfigChange[] };
        print(d, () => (d.changes.length === 0 ? 'the running config is the file\'s\n' : `${table([['option', 'file -> running'], ...d.changes.map((c) => [c.option, c.change])])}\n`));
        return 0;
      }
      const c = (await call('GET', '/v1/config')) as { running: Record<string, unknown>; overrides: Record<string, unknown>; file: string | null };
      print(c, () => {
        const changed = new Set(Object.keys(c.overrides));
        const rows = Object.entries(c.running).map(([k, v]) => [k, show(v), changed.has(k) ? '(run-time change)' : '']);
        return `${c.file === null ? 'no config file' : `config file: ${c.file}`}\n${table([['option', 'value', ''], ...rows])}\n`;
      });
      return 0;
    }
    case 'set': case 'unset': {
      if (args.length === 0) throw new ConfigError(`ctl ${command}: give at least one ${command === 'set' ? 'KEY=VALUE' : 'KEY'}`);
      const patch: Record<string, unknown> = {};
      for (const arg of args) {
        if (command === 'unset') { patch[arg] = null; continue; }
        const eq = arg.indexOf('=');
        if (eq <= 0) throw new ConfigError(`ctl set '${arg}': expected KEY=VALUE, e.g. pool-low=8`);
        patch[arg.slice(0, eq)] = valueOf(arg.slice(eq + 1), arg);
      }
      const r = (await call('PATCH', '/v1/config', patch)) as { changed: ConfigChange[] };
      print(r, () => (r.changed.length === 0 ? 'nothing changed\n' : `${r.changed.map((c) => `${c.option}: ${c.change}`).join('\n')}\n`));
      return 0;
    }
    case 'reload': {
      const r = (await call('POST', '/v1/reload')) as { changed: ConfigChange[] };
      print(r, () => (r.changed.length === 0 ? 'reloaded: nothing changed\n' : `reloaded:\n${r.changed.map((c) => `  ${c.option}: ${c.change}`).join('\n')}\n`));
      return 0;
    }
    default:
      throw new ConfigError(`ctl: unknown command '${command}' (see tcpsplit ctl --help)`);
  }
}

/** VALUE as YAML would read it: `8` a number, `[a, b]` a list, `{rs: ...}` a map, else text. */
function valueOf(text: string, arg: string): unknown {
  try {
    const v: unknown = parseYaml(text);
    return v ?? text;
  } catch (err) {
    throw new ConfigError(`ctl set '${arg}': the value is not valid YAML: ${err instanceof Error ? err.message.split('\n')[0] ?? '' : String(err)}`);
  }
}

function show(v: unknown): string {
  if (Array.isArray(v)) return v.length === 0 ? '[]' : v.join(', ');
  if (typeof v === 'object' && v !== null) {
    const e = Object.entries(v);
    return e.length === 0 ? '{}' : e.map(([k, x]) => `${k}=${String(x)}`).join(', ');
  }
  return String(v);
}

