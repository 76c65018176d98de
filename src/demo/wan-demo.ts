/**
 * The main job on one machine: the paper's WAN (section 4) in the lab, and the same
 * downloads three ways side by side:
 *   e2e       client -> server over the direct "internet" link (273.7 ms RTT)
 *   no-split  client -> rc -> rs -> server, routed, TCP end to end (the same RTT)
 *   tcpsplit  client -> R_C (tcpsplit relay) -> R_S (tcpsplit relay) -> server
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, PROFILES, scaleDelays, startNginx, addressOf, type LabProfile, type NginxServer } from '../lab/index.js';
import type { RelayProcess } from './relay-process.js';
import { startLabRelays, RC_LISTEN_PORT, RS_ACCEPT_PORT, type LabRelays } from './lab-relays.js';
import { curlArgs, median, parseCurlTiming, type CurlTiming } from './curl-timing.js';

export const MODES = ['e2e', 'no-split', 'tcpsplit'] as const;
export type Mode = (typeof MODES)[number];

export interface WanDemoOptions {
  /** File name -> size in bytes. */
  readonly sizes: readonly { readonly name: string; readonly bytes: number }[];
  readonly runs: number;
  readonly delayScale: number;
  readonly prefix: string;
  readonly progress: (line: string) => void;
}

export interface DemoResult {
  readonly profile: LabProfile;
  readonly rows: readonly { size: string; mode: Mode; ttfbMs: number; totalMs: number; runs: CurlTiming[] }[];
  readonly integrity: { file: string; bytes: number; sha256Match: boolean };
  readonly relayLines: { rc: Record<string, unknown> | undefined; rs: Record<string, unknown> | undefined };
  readonly rcRsPackets: number;
}

const HTTP_PORT = 80;

export async function runWanDemo(options: WanDemoOptions, onLab?: (lab: Lab) => void): Promise<DemoResult> {
  const { progress } = options;
  const profile = options.delayScale === 1 ? PROFILES.paper : scaleDelays(PROFILES.paper, options.delayScale);
  progress(`building the lab '${options.prefix}': 4 namespaces, paper RTTs × ${options.delayScale}`);
  const lab = await Lab.create({ prefix: options.prefix, profile });
  onLab?.(lab);
  const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-demo-'));
  let relays: LabRelays | undefined;
  let web: NginxServer | undefined;
  try {
    progress(`starting nginx in 'server' with ${options.sizes.map((s) => s.name).join(', ')}`);
    web = await startNginx(lab, { files: Object.fromEntries(options.sizes.map((s) => [s.name, s.bytes])), port: HTTP_PORT });
    progress(`starting tcpsplit relays: R_S in 'rs' (${addressOf('rs', 'rc')}:${RS_ACCEPT_PORT}), R_C in 'rc' (${addressOf('rc', 'client')}:${RC_LISTEN_PORT})`);
    const chain = await startLabRelays(lab, dir, HTTP_PORT);
    relays = chain;
    const { rc, rs } = chain;
    const server = web;

    const urls: Record<Mode, (file: string) => string> = {
      'e2e': (f) => server.url('internet', f),
      'no-split': (f) => server.url('path', f),
      'tcpsplit': (f) => chain.url(f),
    };
    const rows: DemoResult['rows'][number][] = [];
    for (const size of options.sizes) {
      const byMode = new Map<Mode, CurlTiming[]>(MODES.map((m) => [m, []]));
      for (let run = 1; run <= options.runs; run++) {
        // Interleaved, so slow drift on the machine hits every mode alike.
        for (const mode of MODES) {
          const url = urls[mode](size.name);
          const timing = parseCurlTiming(await lab.exec('client', 'curl', curlArgs(url)), url);
          if (timing.httpCode !== 200 || timing.bytes !== size.bytes) {
            throw new Error(`${mode} download of ${size.name} got HTTP ${timing.httpCode} and ${timing.bytes} of ${size.bytes} bytes`);
          }
          byMode.get(mode)?.push(timing);
          progress(`${size.name.padEnd(8)} ${mode.padEnd(9)} run ${run}/${options.runs}: first byte ${fmtMs(timing.ttfbMs)}, done ${fmtMs(timing.totalMs)}`);
        }
      }
      for (const mode of MODES) {
        const runs = byMode.get(mode) ?? [];
        rows.push({ size: size.name, mode, ttfbMs: median(runs.map((r) => r.ttfbMs)), totalMs: median(runs.map((r) => r.totalMs)), runs });
      }
    }

    // Integrity: the largest file through the split chain, byte for byte.
    const largest = options.sizes.reduce((a, b) => (b.bytes > a.bytes ? b : a));
    const out = join(dir, 'download.bin');
    progress(`checking integrity: ${largest.name} through tcpsplit, SHA-256 against the server's file`);
    const got = await lab.exec('client', 'curl', ['-sS', '-o', out, '--max-time', '120', urls.tcpsplit(largest.name)]);
    if (got.code !== 0) throw new Error(`curl for the integrity check failed: ${got.stderr.trim()}`);
    const sha = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');
    const integrity = { file: largest.name, bytes: largest.bytes, sha256Match: sha(out) === sha(join(server.root, largest.name)) };

    const last = (r: RelayProcess): Record<string, unknown> | undefined =>
      r.lines.filter((l) => l.msg === 'connection closed' || l.msg === 'connection failed').at(-1);
    // Each relay logs a connection when both its legs have closed, just after curl returns.
    const expected = options.runs * options.sizes.length + 1;
    const closed = (r: RelayProcess): number => r.lines.filter((l) => l.msg === 'connection closed' || l.msg === 'connection failed').length;
    for (const r of [rc, rs]) await r.waitFor(() => closed(r) >= expected, 3000).catch(() => undefined);
    const counters = lab.linkCounters('rc-rs');
    return {
      profile,
      rows,
      integrity,
      relayLines: { rc: last(rc), rs: last(rs) },
      rcRsPackets: counters.up.txPackets + counters.down.txPackets,
    };
  } finally {
    await relays?.stop();
    await web?.stop();
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function fmtMs(ms: number): string {
  return ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}
