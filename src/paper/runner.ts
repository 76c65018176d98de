/**
 * The paper's §4 in the lab: build it, set the congestion control, serve the files from
 * nginx in 'server', set up each configuration's path, then download every file with
 * curl from 'client', a new connection each time, runs interleaved across
 * configurations (and the order rotated each round) so that drift favours none. Each
 * download's emulator lateness is recorded beside its times.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LabConfigError, LabError } from '../errors.js';
import { Lab, addressOf, startNginx, type LabProfile, type LinkName, type NginxServer } from '../lab/index.js';
import { lateQuantileMs } from '../lab/emulator/lateness.js';
import { curlArgs, parseCurlTiming } from '../demo/curl-timing.js';
import { NAIVE_SPLIT_ARGS, startLabRelays, startTransparentRelays } from '../demo/lab-relays.js';
import type { RelayProcess } from '../demo/relay-process.js';
import { configuration, type ConfigName } from './configurations.js';
import { setLabCongestionControl, type CongestionControl } from './congestion.js';
import { predict, type PathRtts } from './model.js';
import { startSshForward, type SshForward } from './ssh-forward.js';
import type { FileSize } from './sizes.js';

export interface PaperRunOptions {
  readonly profile: LabProfile;
  readonly configs: readonly ConfigName[];
  readonly sizes: readonly FileSize[];
  readonly runs: number;
  readonly cc: CongestionControl;
  readonly prefix: string;
  /** Stops the runs between two downloads; everything is still taken down. */
  readonly signal?: AbortSignal;
  /** Called after every download (and with messages while setting up). */
  readonly onProgress?: (event: ProgressEvent) => void;
}

export type ProgressEvent =
  | { readonly kind: 'setup'; readonly message: string }
  | { readonly kind: 'sample'; readonly done: number; readonly total: number; readonly sample: Sample };

/** One download. Times in seconds, as curl gives them. */
export interface Sample {
  readonly config: ConfigName;
  readonly sizeBytes: number;
  readonly run: number;
  readonly connect: number;
  readonly ttfb: number;
  readonly total: number;
  /** The worst p90 and p99 emulator lateness (ms) of the links this download crossed, over its packets. */
  readonly lateP90Ms: number;
  readonly lateP99Ms: number;
  /** What that lateness could add at most (ms): latenessBoundMs(). */
  readonly lateBoundMs: number;
  readonly flagged: boolean;
}

export interface LinkMeasure {
  /** Configured (the profile: up + down delay). */
  readonly rttMs: number;
  /** The fastest of the pings before the runs. */
  readonly pingMinMs: number;
}

export interface PaperRun {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly profile: LabProfile;
  readonly rtts: PathRtts;
  readonly links: Readonly<Record<LinkName, LinkMeasure>>;
  readonly samples: readonly Sample[];
}

const HTTP_PORT = 80;
/**
 * Every configuration runs beside the others, interleaved, so each has its own way in:
 * 'split+es' is a transparent pair that intercepts only ES_PORT (nginx serves it too,
 * so 'nosplit' on HTTP_PORT stays routed), with its own intercept listener; the -L pairs
 * have their own R_C and R_S ports (and so their own early-SYN rules and queues).
 */
const ES_PORT = 8081;
const ES_LISTEN_PORT = 7081;
const ESCP_PORTS = { rcPort: 8082, rsPort: 7002 } as const;
/** Early SYN and the pool on, Turbo-Start off: each improvement where its configuration has it. */
const ES_ARGS: readonly string[] = ['--early-syn', 'on', '--pool', 'off', '--turbo', 'off'];
const ESCP_ARGS: readonly string[] = ['--early-syn', 'on', '--pool', 'on', '--turbo', 'off'];
const FULL_ARGS: readonly string[] = ['--early-syn', 'on', '--pool', 'on', '--turbo', 'on'];

/**
 * The configurations in the order they run: interleaved, except that those with
 * Turbo-Start run in a phase of their own, after the rest. Its initial windows are routes
 * to the peer relay's address (src/turbo), so while they are up every leg between rc and
 * rs gets them, the other configurations' and ssh's too.
 */
export function phases(configs: readonly ConfigName[]): ConfigName[][] {
  const turbo = configs.filter((c) => { const p = configuration(c).path; return p.kind === 'split' && p.turboRcRs; });
  const rest = configs.filter((c) => !turbo.includes(c));
  return [rest, turbo].filter((p) => p.length > 0);
}
const PING_COUNT = 5;

/**
 * A download is flagged when its emulator lateness could have moved its time by more
 * than FLAG_SHARE of the model's download time and more than FLAG_FLOOR_MS. The
 * estimate: the p90 lateness of its links (per traversal) x 2 traversals per link per
 * round trip x the round trips the model counts (its download time over the path's
 * RTT). p90, not p99: the packets that set the times are few per round trip, and the
 * p99 for every one of them flagged 119 of 160 runs at load average 3-5 while their
 * first bytes stayed within 3 ms of the model. The floor is 12 traversals (2 round
 * trips over 3 links) at 0.25 ms, the p99 beyond which the lab's own timing tests call
 * a run starved (test/helpers/lab.ts).
 */
export const FLAG_SHARE = 0.01;
export const FLAG_FLOOR_MS = 3;

export function latenessBoundMs(lateMs: number, links: number, modelTotalMs: number, pathRttMs: number): number {
  const roundTrips = pathRttMs > 0 ? modelTotalMs / pathRttMs : 2;
  return lateMs * 2 * links * roundTrips;
}

export function rttsOf(profile: LabProfile): PathRtts {
  const rtt = (l: LinkName): number => profile[l].up.delayMs + profile[l].down.delayMs;
  return { r1Ms: rtt('client-rc'), r2Ms: rtt('rc-rs'), r3Ms: rtt('rs-server'), riMs: rtt('internet') };
}

/** Each link's histograms now, to count only a download's own packets. */
function mark(lab: Lab, links: readonly LinkName[]): Map<string, readonly number[]> {
  const m = new Map<string, readonly number[]>();
  for (const l of links) {
    const c = lab.linkCounters(l);
    m.set(`${l} up`, c.up.lateHistogram);
    m.set(`${l} down`, c.down.lateHistogram);
  }
  return m;
}

function lateSince(lab: Lab, links: readonly LinkName[], since: Map<string, readonly number[]>, q: number): number {
  let worst = 0;
  for (const l of links) {
    const c = lab.linkCounters(l);
    for (const [dir, d] of [['up', c.up], ['down', c.down]] as const) {
      const before = since.get(`${l} ${dir}`) ?? [];
      worst = Math.max(worst, lateQuantileMs(d.lateHistogram.map((v, i) => v - (before[i] ?? 0)), q, d.lateMaxMs));
    }
  }
  return worst;
}

async function pingMin(lab: Lab, from: 'client' | 'rc' | 'rs', to: string): Promise<number> {
  const r = await lab.exec(from, 'ping', ['-c', String(PING_COUNT), '-i', '0.05', '-q', to], { timeoutMs: 30_000 });
  const m = /= ([\d.]+)\//.exec(r.stdout);
  return m?.[1] === undefined ? Number.NaN : Number(m[1]);
}

/** The relays' start line for early SYN says it runs; a configuration that needs it fails otherwise. */
async function requireEarlySyn(config: ConfigName, relays: readonly RelayProcess[]): Promise<void> {
  for (const relay of relays) {
    const line = await relay.waitFor((l) => l['event'] === 'early-syn', 10_000);
    if (!String(line.msg).startsWith('early SYN on')) throw new LabError(`configuration '${config}' needs early SYN, and a relay said: ${String(line.msg)}`);
  }
}

export async function runPaper(options: PaperRunOptions): Promise<PaperRun> {
  const { configs, sizes, runs } = options;
  for (const name of configs) {
    const needs = configuration(name).needs;
    if (needs !== undefined) throw new LabConfigError(`configuration '${name}' needs ${needs}, which has not landed yet`);
  }
  if (configs.length === 0 || sizes.length === 0 || runs < 1) throw new LabConfigError('nothing to run: give at least one configuration, size and run');
  const setup = (message: string): void => { options.onProgress?.({ kind: 'setup', message }); };
  const startedAt = new Date().toISOString();
  const rtts = rttsOf(options.profile);
  setup(`building the lab '${options.prefix}' (r1 ${rtts.r1Ms.toFixed(2)} ms, r2 ${rtts.r2Ms.toFixed(2)} ms, r3 ${rtts.r3Ms.toFixed(2)} ms, internet ${rtts.riMs.toFixed(2)} ms)`);
  const lab = await Lab.create({ prefix: options.prefix, profile: options.profile });
  const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-paper-'));
  let web: NginxServer | undefined;
  const relays: { stop(): Promise<void> }[] = [];
  let ssh: SshForward | undefined;
  try {
    setup(`congestion control ${options.cc} on every route of every host`);
    await setLabCongestionControl(lab, options.cc);
    const links: Record<LinkName, LinkMeasure> = {
      'client-rc': { rttMs: rtts.r1Ms, pingMinMs: await pingMin(lab, 'client', addressOf('rc', 'client')) },
      'rc-rs': { rttMs: rtts.r2Ms, pingMinMs: await pingMin(lab, 'rc', addressOf('rs', 'rc')) },
      'rs-server': { rttMs: rtts.r3Ms, pingMinMs: await pingMin(lab, 'rs', addressOf('server', 'path')) },
      'internet': { rttMs: rtts.riMs, pingMinMs: await pingMin(lab, 'client', addressOf('server', 'internet')) },
    };
    setup(`nginx in 'server' serving ${sizes.map((s) => s.file).join(', ')}`);
    const server = await startNginx(lab, {
      files: Object.fromEntries(sizes.map((s) => [s.file, s.bytes])), port: HTTP_PORT, ...(configs.includes('split+es') ? { extraPorts: [ES_PORT] } : {}),
    });
    web = server;
    const smallest = sizes.reduce((a, b) => (b.bytes < a.bytes ? b : a));
    /** Starts what a configuration needs (its relays, its ssh session) and returns its URLs. */
    const start = async (name: ConfigName): Promise<(file: string) => string> => {
      switch (name) {
        case 'e2e': return (f) => server.url('internet', f);
        case 'nosplit': return (f) => server.url('path', f);
        case 'split': {
          setup('tcpsplit relays: R_S in \'rs\', R_C in \'rc\'');
          // 'split' is the naive split: every improvement off (early SYN, the pool, Turbo-Start).
          const chain = await startLabRelays(lab, dir, HTTP_PORT, { relayArgs: NAIVE_SPLIT_ARGS });
          relays.push(chain);
          return (f) => chain.url(f);
        }
        case 'split+es': {
          setup(`tcpsplit relays with early SYN, transparent: R_C in 'rc' and R_S in 'rs' intercept port ${String(ES_PORT)} of the server`);
          const pair = await startTransparentRelays(lab, dir, { port: ES_PORT, listenPort: ES_LISTEN_PORT, rcArgs: ES_ARGS, rsArgs: ES_ARGS });
          relays.push(pair);
          await requireEarlySyn(name, [pair.rc, pair.rs]);
          return (f) => server.url('path', f, ES_PORT);
        }
        case 'split+es+cp':
        case 'full': {
          const turbo = name === 'full';
          setup(`tcpsplit relays with early SYN and the pool${turbo ? ' and Turbo-Start' : ''}: R_S in 'rs' (port ${String(ESCP_PORTS.rsPort)}), R_C in 'rc' (port ${String(ESCP_PORTS.rcPort)})`);
          const chain = await startLabRelays(lab, dir, HTTP_PORT, { relayArgs: turbo ? FULL_ARGS : ESCP_ARGS, ...ESCP_PORTS });
          relays.push(chain);
          await requireEarlySyn(name, [chain.rc]);
          return (f) => chain.url(f);
        }
        case 'ssh': {
          setup('OpenSSH: sshd in \'rs\', ssh -L in \'rc\' (one session, set up now)');
          const fwd = await startSshForward(lab, { target: `${addressOf('server', 'path')}:${String(HTTP_PORT)}`, probeFile: smallest.file });
          ssh = fwd;
          return (f) => fwd.url(f);
        }
      }
    };
    const urls = new Map<ConfigName, (file: string) => string>();
    const download = async (name: ConfigName, size: FileSize): Promise<ReturnType<typeof parseCurlTiming>> => {
      const url = (urls.get(name) ?? ((f: string) => f))(size.file);
      const timing = parseCurlTiming(await lab.exec('client', 'curl', curlArgs(url, 300), { timeoutMs: 310_000 }), url);
      if (timing.httpCode !== 200 || timing.bytes !== size.bytes) {
        throw new LabError(`${name}: ${url} gave HTTP ${String(timing.httpCode)} and ${String(timing.bytes)} of ${String(size.bytes)} bytes`);
      }
      return timing;
    };

    const samples: Sample[] = [];
    const total = runs * sizes.length * configs.length;
    for (const phase of phases(configs)) {
      for (const name of phase) urls.set(name, await start(name));
      setup(`one warm-up download per configuration (not counted)${phase.length < configs.length ? `: ${phase.join(', ')}` : ''}`);
      for (const name of phase) await download(name, smallest);
      for (let run = 1; run <= runs; run++) {
        for (const size of sizes) {
          // Rotate the order each round, so that no configuration always goes first.
          const shift = (run - 1 + sizes.indexOf(size)) % phase.length;
          for (const name of [...phase.slice(shift), ...phase.slice(0, shift)]) {
            options.signal?.throwIfAborted();
            const conf = configuration(name);
            const since = mark(lab, conf.links);
            const t = await download(name, size);
            const lateP90Ms = lateSince(lab, conf.links, since, 0.9);
            const lateP99Ms = lateSince(lab, conf.links, since, 0.99);
            const model = predict(rtts, conf.path, size.bytes);
            const pathRttMs = conf.path.kind === 'direct' && conf.path.via === 'internet' ? rtts.riMs : rtts.r1Ms + rtts.r2Ms + rtts.r3Ms;
            const lateBoundMs = latenessBoundMs(lateP90Ms, conf.links.length, model.totalMs, pathRttMs);
            const sample: Sample = {
              config: name, sizeBytes: size.bytes, run,
              connect: t.connectMs / 1000, ttfb: t.ttfbMs / 1000, total: t.totalMs / 1000,
              lateP90Ms, lateP99Ms, lateBoundMs, flagged: lateBoundMs > Math.max(FLAG_FLOOR_MS, FLAG_SHARE * model.totalMs),
            };
            samples.push(sample);
            options.onProgress?.({ kind: 'sample', done: samples.length, total, sample });
          }
        }
      }
      // The phase's relays go (and with them any Turbo-Start routes) before the next starts.
      await Promise.all(relays.splice(0).map((r) => r.stop()));
    }
    return { startedAt, finishedAt: new Date().toISOString(), profile: options.profile, rtts, links, samples };
  } finally {
    await ssh?.stop();
    await Promise.all(relays.map((r) => r.stop()));
    await web?.stop();
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
