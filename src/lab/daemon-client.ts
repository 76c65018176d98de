/**
 * The other side of daemon.ts, for the CLI: start a daemon and wait until its lab is
 * ready, ask it for status, stop it.
 */
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LabBusyError, LabError, TcpsplitError } from '../errors.js';
import { requestUnix } from '../control/unix-http.js';
import { removeStaleNginxDirs } from './nginx.js';
import type { LabStatus } from './lab.js';
import { STATE_ROOT, ownerAlive, readState, removeState, type LabState } from './lab-state.js';
import type { LabProfile } from './link-config.js';
import { teardownTopology, topologyExists } from './topology.js';

const DAEMON_PATH = new URL('./daemon.js', import.meta.url).pathname;
const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;

export function daemonLogPath(prefix: string): string {
  return join(STATE_ROOT, `lab-${prefix}.log`);
}

function profilePath(prefix: string): string {
  return join(STATE_ROOT, `lab-${prefix}.profile.json`);
}

function tail(path: string, lines: number): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** Starts a detached daemon for the lab and resolves with its pid once the lab is ready. */
export async function startDaemon(prefix: string, profile: LabProfile, options: { readonly ipv6?: boolean; readonly web?: boolean } = {}): Promise<number> {
  const state = readState(prefix);
  if (state !== undefined && ownerAlive(state)) {
    throw new LabBusyError(`lab '${prefix}' is already up (pid ${state.ownerPid}); 'tcpsplit lab down --prefix ${prefix}' first, or pick another --prefix`);
  }
  mkdirSync(STATE_ROOT, { recursive: true, mode: 0o755 });
  const profileFile = profilePath(prefix);
  writeFileSync(profileFile, JSON.stringify(profile), { mode: 0o600 });
  const log = daemonLogPath(prefix);
  const logFd = openSync(log, 'w', 0o600);
  const child = spawn(process.execPath, [DAEMON_PATH, '--prefix', prefix, '--profile-file', profileFile, ...(options.ipv6 === true ? ['--ipv6'] : []), ...(options.web === false ? ['--no-web'] : [])], {
    detached: true, stdio: ['ignore', logFd, logFd, 'pipe'],
  });
  closeSync(logFd);
  const ready = child.stdio[3];
  if (ready === null || ready === undefined || !('on' in ready)) throw new LabError('cannot talk to the lab daemon');
  const message = await new Promise<string>((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => {
      // Not ready in time: stop it (its SIGTERM handler tears down what it built) rather
      // than leave a daemon that may still bring a lab up after we reported failure.
      child.kill('SIGTERM');
      reject(new LabError(`the lab daemon was not ready within ${READY_TIMEOUT_MS / 1000} s and was stopped; see ${log}`));
    }, READY_TIMEOUT_MS);
    ready.on('data', (chunk: Buffer) => { text += chunk.toString(); });
    ready.on('error', () => { /* reported through the missing message */ });
    ready.on('close', () => { clearTimeout(timer); resolve(text); });
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
  });
  ready.destroy();
  child.unref();
  let parsed: { ok?: boolean; pid?: number; code?: string; message?: string } = {};
  try {
    parsed = JSON.parse(message) as typeof parsed;
  } catch {
    // fall through with the log
  }
  if (parsed.ok === true && typeof parsed.pid === 'number') return parsed.pid;
  rmSync(profileFile, { force: true });
  const why = parsed.message ?? `the daemon exited without a report:\n${tail(log, 20)}`;
  throw new TcpsplitError(parsed.code ?? LabError.code, `lab up failed: ${why} (log: ${log})`);
}

/** Asks the daemon for its live status: GET /v1/status on its socket (src/control/unix-http.ts, as the relay's control API). */
export async function queryStatus(state: LabState, timeoutMs = 5000): Promise<LabStatus> {
  const path = state.controlSocket;
  if (path === undefined) throw new LabError(`lab '${state.prefix}' has no status socket (owned by pid ${state.ownerPid}, not a daemon)`);
  let reply;
  try {
    reply = await requestUnix(path, 'GET', '/v1/status', undefined, timeoutMs);
  } catch (err) {
    throw new LabError(`cannot reach the lab daemon at ${path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  if (reply.status !== 200 || typeof reply.body !== 'object' || reply.body === null) {
    throw new LabError(`the lab daemon sent a malformed status (HTTP ${String(reply.status)})`);
  }
  return reply.body as LabStatus;
}

export interface DownResult {
  readonly stoppedPid?: number;
  readonly removed: boolean;
}

/**
 * Stops the lab's daemon (only a pid whose cmdline still matches the state file) and
 * removes whatever the lab left. Refuses a lab owned by another live, non-daemon process.
 */
export async function stopLab(prefix: string): Promise<DownResult> {
  const state = readState(prefix);
  let stoppedPid: number | undefined;
  if (state !== undefined && ownerAlive(state)) {
    if (state.ownerKind !== 'daemon') {
      throw new LabBusyError(`lab '${prefix}' is owned by live process ${state.ownerPid} (not a daemon); it must destroy the lab itself`);
    }
    process.kill(state.ownerPid, 'SIGTERM');
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    while (ownerAlive(state) && Date.now() < deadline) await sleep(50);
    if (ownerAlive(state)) process.kill(state.ownerPid, 'SIGKILL');
    stoppedPid = state.ownerPid;
  }
  const existed = state !== undefined || topologyExists(prefix);
  rmSync(profilePath(prefix), { force: true });
  removeStaleNginxDirs(prefix); // the owner is gone: a SIGKILLed daemon leaves its web server's dir
  if (!existed && stoppedPid === undefined) {
    rmSync(daemonLogPath(prefix), { force: true });
    return { removed: false };
  }
  await teardownTopology(prefix); // throws on failure: the log stays for the diagnosis
  removeState(prefix);
  rmSync(daemonLogPath(prefix), { force: true });
  return stoppedPid === undefined ? { removed: existed } : { stoppedPid, removed: existed };
}
