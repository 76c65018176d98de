import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ProcessGroup, Started } from './process-group.js';
import { freePort, waitForListen } from './proc-stats.js';

/**
 * The rows of the comparison: one relay hop each, from 127.0.0.1:port to a backend on
 * 127.0.0.1:targetPort. 'direct' is no hop at all, the ceiling.
 */
export const PROXY_NAMES = ['direct', 'haproxy', 'haproxy-splice', 'socat', 'tcpsplit', 'tcpsplit-info', 'tcpsplit-w1', 'tcpsplit-w2'] as const;
export type ProxyName = (typeof PROXY_NAMES)[number];

export const PROXY_DESCRIPTIONS: Readonly<Record<ProxyName, string>> = {
  direct: 'no proxy: the client talks to the server itself (the ceiling)',
  haproxy: 'haproxy, TCP mode, nbthread = cores (the baseline of the ratios)',
  'haproxy-splice': "haproxy as above with 'option splice-auto' (kernel splice for bulk data)",
  socat: 'socat TCP-LISTEN,fork: one forked process per connection',
  tcpsplit: 'tcpsplit relay -L, --log-level warn (no per-connection log line), default --workers (one per CPU)',
  'tcpsplit-info': 'tcpsplit relay -L at the default --log-level info (one JSON line per connection, to a file)',
  'tcpsplit-w1': 'tcpsplit as above with --workers 1 (one worker thread)',
  'tcpsplit-w2': 'tcpsplit as above with --workers 2 (the scaling line compares it with --workers 1)',
};

/**
 * Rows without an idle-memory figure: 'direct' has no proxy, and socat forks a process per
 * connection, so its listener's RSS says nothing about what a connection costs.
 */
export const NO_IDLE_MEMORY: readonly ProxyName[] = ['direct', 'socat'];

/** Where the compiled relay CLI lives: dist/benchmarks/ -> dist/src/cli/main.js. */
export const RELAY_MAIN = resolve(dirname(fileURLToPath(import.meta.url)), '../src/cli/main.js');

export interface ProxyInstance {
  readonly name: ProxyName;
  /** Where clients connect: the proxy's listener, or the backend itself for 'direct'. */
  readonly port: number;
  /** The proxy process (undefined for 'direct'). */
  readonly proc: Started | undefined;
}

function haproxyConfig(listenPort: number, targetPort: number, splice: boolean): string {
  return [
    'global',
    `  nbthread ${availableParallelism()}`,
    // Above the idle-connection cap (6000); haproxy then asks for ~17,500 fds (2 per connection,
    // plus splice pipes), under the 20,000 open-files limit.
    '  maxconn 7000',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 5m', // the relay's default idle timeout
    '  timeout server 5m',
    ...(splice ? ['  option splice-auto'] : []),
    'frontend fe',
    `  bind 127.0.0.1:${listenPort}`,
    '  default_backend be',
    'backend be',
    `  server s1 127.0.0.1:${targetPort}`,
    '',
  ].join('\n');
}

function command(name: Exclude<ProxyName, 'direct'>, dir: string, listenPort: number, targetPort: number): [string, string[]] {
  switch (name) {
    case 'haproxy':
    case 'haproxy-splice': {
      const cfg = join(dir, 'haproxy.cfg');
      writeFileSync(cfg, haproxyConfig(listenPort, targetPort, name === 'haproxy-splice'));
      return ['haproxy', ['-db', '-f', cfg]];
    }
    case 'socat':
      return ['socat', [`TCP4-LISTEN:${listenPort},bind=127.0.0.1,reuseaddr,fork,backlog=4096`, `TCP4:127.0.0.1:${targetPort}`]];
    case 'tcpsplit':
    case 'tcpsplit-info':
    case 'tcpsplit-w1':
    case 'tcpsplit-w2':
      return [process.execPath, [
        RELAY_MAIN, 'relay', '-L', `127.0.0.1:${listenPort}:127.0.0.1:${targetPort}`,
        ...(name === 'tcpsplit-info' ? [] : ['--log-level', 'warn']),
        ...(name === 'tcpsplit-w1' ? ['--workers', '1'] : name === 'tcpsplit-w2' ? ['--workers', '2'] : []),
      ]];
  }
}

/** Starts one proxy toward 127.0.0.1:`targetPort` and waits until it listens. */
export async function startProxy(group: ProcessGroup, name: ProxyName, targetPort: number): Promise<ProxyInstance> {
  if (name === 'direct') return { name, port: targetPort, proc: undefined };
  const dir = group.tempDir(name);
  const port = await freePort();
  const [cmd, args] = command(name, dir, port, targetPort);
  const proc = group.start(name, cmd, args, join(dir, `${name}.log`));
  await waitForListen(port, proc);
  return { name, port, proc };
}

export async function stopProxy(group: ProcessGroup, proxy: ProxyInstance): Promise<void> {
  if (proxy.proc !== undefined) await group.stop(proxy.proc);
}
