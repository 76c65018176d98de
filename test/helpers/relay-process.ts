import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { RelayProcess } from '../../src/demo/relay-process.js';

export { RelayProcess, CLI, type LogLine } from '../../src/demo/relay-process.js';

/**
 * A `tcpsplit relay -L 127.0.0.1:0:127.0.0.1:targetPort [extra...]` child process, ready,
 * with its listening port; `stop` belongs in the test's cleanups.
 */
export async function forwardingRelayProcess(targetPort: number, extra: string[] = []): Promise<{ relay: RelayProcess; port: number }> {
  const relay = new RelayProcess(['-L', `127.0.0.1:0:127.0.0.1:${targetPort}`, ...extra]);
  const [port] = (await relay.ready().catch(async (err: unknown) => { await relay.stop(); throw err; })).forward;
  if (port === undefined) throw new Error('relay reported no forward listener');
  return { relay, port };
}

/** Open file descriptors of a process (/proc/<pid>/fd). */
export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** The text of a relay's /metrics (a fresh connection each time, so none is left open). */
async function scrapeAll(metricsPort: number): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    httpGet({ host: '127.0.0.1', port: metricsPort, path: '/metrics', agent: false, headers: { connection: 'close' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { text += c; });
      res.on('end', () => { resolve(text); });
    }).on('error', reject);
  });
}

/** A series summed over its labels, or undefined if the relay does not export it. */
function sumOf(body: string, name: string): number | undefined {
  let sum: number | undefined;
  for (const line of body.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m?.[1] === name) sum = (sum ?? 0) + Number(m[3]);
  }
  return sum;
}

/** One sample of a relay's /metrics, summed over labels; throws if the series is absent. */
export async function scrapeMetric(metricsPort: number, name: string): Promise<number> {
  const sum = sumOf(await scrapeAll(metricsPort), name);
  if (sum === undefined) throw new Error(`no metric ${name} on :${metricsPort}`);
  return sum;
}

/**
 * A relay's open descriptors less its pooled connections (ready ones it keeps as R_C, and
 * authenticated idle ones it holds as R_S): one descriptor each, and their number moves
 * with the load (a miss raises the pool's target towards the high watermark; docs/pool.md),
 * so a leak check counts net of them.
 */
export async function fdsNetOfPool(pid: number, metricsPort: number): Promise<number> {
  const body = await scrapeAll(metricsPort);
  const fds = openFds(pid);
  return fds - (sumOf(body, 'tcpsplit_pool_size') ?? 0) - (sumOf(body, 'tcpsplit_pool_idle_accepted') ?? 0);
}

const TCP_STATES: Readonly<Record<string, string>> = {
  '01': 'ESTABLISHED', '02': 'SYN_SENT', '03': 'SYN_RECV', '04': 'FIN_WAIT1', '05': 'FIN_WAIT2', '06': 'TIME_WAIT',
  '07': 'CLOSE', '08': 'CLOSE_WAIT', '09': 'LAST_ACK', '0A': 'LISTEN', '0B': 'CLOSING',
};

/**
 * The TCP states of the sockets a process holds (its fds' socket inodes, matched in
 * /proc/net/tcp and tcp6): state name to count. Sockets the process already closed
 * (TIME_WAIT, an orphan FIN_WAIT) belong to the kernel, not to it, and are not counted.
 */
export function tcpStatesOf(pid: number): Map<string, number> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1] !== undefined) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  const states = new Map<string, number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      const inode = cols[9];
      const st = cols[3];
      if (inode === undefined || st === undefined || !inodes.has(inode)) continue;
      const name = TCP_STATES[st] ?? st;
      states.set(name, (states.get(name) ?? 0) + 1);
    }
  }
  return states;
}
