import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ProcessGroup, Started } from './process-group.js';
import { tail } from './proc-stats.js';

/** The load generators, iperf3 and wrk, run as tracked children with a hard time bound. */

export interface ThroughputResult {
  /** Receiver-side goodput. */
  readonly gbitPerSec: number;
  readonly retransmits: number | undefined;
}

export interface ConnectResult {
  readonly requestsPerSec: number;
  readonly requests: number;
  /** wrk socket errors, by kind. */
  readonly socketErrors: { connect: number; read: number; write: number; timeout: number };
  readonly non2xx: number;
  readonly errors: number;
}

/** Numbers each run's output file: a file is never appended to by a second run. */
let runSeq = 0;

/** Runs a child to completion, or stops it once `limitMs` has passed. */
async function runBounded(group: ProcessGroup, proc: Started, limitMs: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((r) => { timer = setTimeout(() => { r('timeout'); }, limitMs); });
  const outcome = await Promise.race([proc.exited, timedOut]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    await group.stop(proc);
    throw new Error(`${proc.name} ran over its ${limitMs} ms limit; its output: ${tail(proc.logPath)}`);
  }
  return outcome;
}

interface Iperf3Json {
  error?: string;
  end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } };
}

/** One iperf3 client, one stream, `seconds` long, toward 127.0.0.1:`port`. */
export async function runIperf3(group: ProcessGroup, dir: string, port: number, seconds: number): Promise<ThroughputResult> {
  const log = join(dir, `iperf3-client-${port}-${++runSeq}.json`);
  const proc = group.start('iperf3 -c', 'iperf3', ['-c', '127.0.0.1', '-p', String(port), '-t', String(seconds), '-P', '1', '-J'], log);
  await runBounded(group, proc, (seconds + 20) * 1000);
  let json: Iperf3Json;
  try {
    json = JSON.parse(readFileSync(log, 'utf8')) as Iperf3Json;
  } catch {
    throw new Error(`iperf3 printed no JSON: ${tail(log)}`);
  }
  if (json.error !== undefined) throw new Error(`iperf3: ${json.error}`);
  const bps = json.end?.sum_received?.bits_per_second;
  if (bps === undefined) throw new Error(`iperf3 reported no receiver throughput: ${tail(log)}`);
  return { gbitPerSec: bps / 1e9, retransmits: json.end?.sum_sent?.retransmits };
}

export const WRK_CONNECTIONS = 50;
export const WRK_THREADS = 2;

/** wrk with a new connection per request (Connection: close) toward 127.0.0.1:`port`. */
export async function runWrk(group: ProcessGroup, dir: string, port: number, seconds: number): Promise<ConnectResult> {
  const log = join(dir, `wrk-${port}-${++runSeq}.txt`);
  const proc = group.start('wrk', 'wrk', [
    '-c', String(WRK_CONNECTIONS), '-t', String(WRK_THREADS), '-d', `${seconds}s`, '--timeout', '5s',
    '-H', 'Connection: close', `http://127.0.0.1:${port}/`,
  ], log);
  const code = await runBounded(group, proc, (seconds + 20) * 1000);
  const result = parseWrk(readFileSync(log, 'utf8'));
  if (result === undefined) throw new Error(`wrk exited with ${code} and no result: ${tail(log)}`);
  return result;
}

export function parseWrk(text: string): ConnectResult | undefined {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text)?.[1];
  const total = /^\s*(\d+) requests in /m.exec(text)?.[1];
  if (rps === undefined || total === undefined) return undefined;
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const socketErrors = {
    connect: Number(sock?.[1] ?? 0),
    read: Number(sock?.[2] ?? 0),
    write: Number(sock?.[3] ?? 0),
    timeout: Number(sock?.[4] ?? 0),
  };
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0);
  const errors = socketErrors.connect + socketErrors.read + socketErrors.write + socketErrors.timeout + non2xx;
  return { requestsPerSec: Number(rps), requests: Number(total), socketErrors, non2xx, errors };
}
