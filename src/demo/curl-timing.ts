import type { CommandResult } from '../lab/index.js';

/** What curl reports about one download (`-w`), in milliseconds and bytes. */
export interface CurlTiming {
  readonly connectMs: number;
  /** Time to first byte: curl's time_starttransfer. */
  readonly ttfbMs: number;
  readonly totalMs: number;
  readonly bytes: number;
  readonly httpCode: number;
}

/** Arguments for a timed, quiet download to /dev/null. */
export function curlArgs(url: string, timeoutS = 120): string[] {
  return ['-sS', '-o', '/dev/null', '--max-time', String(timeoutS),
    '-w', '%{time_connect} %{time_starttransfer} %{time_total} %{size_download} %{http_code}\\n', url];
}

export function parseCurlTiming(result: CommandResult, url: string): CurlTiming {
  const fields = result.stdout.trim().split(/\s+/);
  const [connect, ttfb, total, bytes, code] = fields.map(Number);
  if (result.code !== 0 || fields.length !== 5 || [connect, ttfb, total, bytes, code].some((v) => v === undefined || Number.isNaN(v))) {
    throw new Error(`curl ${url} failed (exit ${result.code}): ${result.stderr.trim() || result.stdout.trim()}`);
  }
  return {
    connectMs: (connect ?? 0) * 1000,
    ttfbMs: (ttfb ?? 0) * 1000,
    totalMs: (total ?? 0) * 1000,
    bytes: bytes ?? 0,
    httpCode: code ?? 0,
  };
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2 === 1 ? (sorted[mid] ?? Number.NaN) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}
