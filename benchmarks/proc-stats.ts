import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Started } from './process-group.js';

/** Process and socket facts from /proc (Linux), and free ports on 127.0.0.1. */

const TCP_LISTEN = '0A';
const LOOPBACK_HEX = '0100007F'; // 127.0.0.1 in /proc/net/tcp's byte order

let clockTicks: number | undefined;

/** Resident set size of `pid` in KiB (VmRSS). */
export function readRssKb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (match?.[1] === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]);
}

/**
 * CPU seconds used by `pid` (user + system), plus those of children it has reaped:
 * socat's per-connection children count once socat has waited for them.
 */
export function readCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may hold spaces and parentheses; fields after the last ')' are fixed.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime, stime, cutime, cstime are fields 14-17 of stat(5); field 3 is fields[0] here.
  const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i] ?? 0), 0);
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return ticks / clockTicks;
}

/** A port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => { resolve(); }));
  if (address === null || typeof address === 'string') throw new Error('no port from listen(0)');
  return address.port;
}

function isListening(port: number): boolean {
  const want = `${LOOPBACK_HEX}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const table = readFileSync('/proc/net/tcp', 'utf8');
  for (const line of table.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols[1] === want && cols[3] === TCP_LISTEN) return true;
  }
  return false;
}

const TCP_TIME_WAIT = '06';

/**
 * Sockets on 127.0.0.1:`port` (the proxy's side of client connections) that are neither
 * listening nor in TIME_WAIT: connections the proxy still holds open.
 */
export function countOpenConnections(port: number): number {
  const local = `${LOOPBACK_HEX}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let open = 0;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols[1] === local && cols[3] !== TCP_LISTEN && cols[3] !== TCP_TIME_WAIT) open++;
  }
  return open;
}

/**
 * Waits until something listens on 127.0.0.1:`port`, by reading /proc/net/tcp rather than
 * connecting: a probe connection would count as a client (iperf3 -s -1 would serve it
 * and exit; a proxy would open a leg for it).
 */
export async function waitForListen(port: number, proc: Started | undefined, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (isListening(port)) return;
    if (proc?.hasExited() === true) {
      throw new Error(`${proc.name} exited before listening on ${port}; its output: ${tail(proc.logPath)}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms${proc === undefined ? '' : ` (${proc.name}: ${tail(proc.logPath)})`}`);
}

/** The last lines of a log file, for error messages. */
export function tail(path: string, maxChars = 600): string {
  try {
    const text = readFileSync(path, 'utf8').trim();
    return text.length > maxChars ? `...${text.slice(-maxChars)}` : text || '(empty)';
  } catch {
    return '(no output)';
  }
}
