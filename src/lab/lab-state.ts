/**
 * The lab's state on disk, /run/tcpsplit/lab-<prefix>/, so that another process
 * (`lab status`, `lab down`, the next `lab up`) knows who owns a lab and can clean up
 * after a crash.
 *
 * state.json names the owner (the daemon, or the process that called Lab.create) by
 * pid and by its exact /proc/PID/cmdline: a pid is treated as the owner, and signalled,
 * only while both match, so a recycled pid is never killed.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { LabConfigError } from '../errors.js';
import type { LabProfile } from './link-config.js';

export const STATE_ROOT = process.env.TCPSPLIT_RUN_DIR ?? '/run/tcpsplit';
export const DEFAULT_PREFIX = 'tsl';
const PREFIX_RE = /^[a-z][a-z0-9]{0,7}$/;

export interface LabState {
  readonly version: 1;
  readonly prefix: string;
  readonly ownerPid: number;
  /** /proc/PID/cmdline of the owner, NULs as spaces. */
  readonly ownerCmdline: string;
  readonly ownerKind: 'daemon' | 'process';
  readonly startedAt: string;
  readonly profile: LabProfile;
  /** Unix socket answering status requests (daemon only). */
  readonly controlSocket?: string;
}

/** Prefixes are 1-8 of [a-z0-9], starting with a letter: they must fit in interface names. */
export function verifyPrefix(prefix: string): string {
  if (!PREFIX_RE.test(prefix)) {
    throw new LabConfigError(`bad lab prefix '${prefix}': 1-8 characters of a-z and 0-9, starting with a letter (e.g. tsl, t1)`);
  }
  return prefix;
}

export function stateDir(prefix: string): string {
  return join(STATE_ROOT, `lab-${prefix}`);
}

export function stateFile(prefix: string): string {
  return join(stateDir(prefix), 'state.json');
}

export function readCmdline(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+$/, '').replaceAll('\0', ' ');
  } catch {
    return undefined;
  }
}

export function readState(prefix: string): LabState | undefined {
  let text: string;
  try {
    text = readFileSync(stateFile(prefix), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const s = JSON.parse(text) as Partial<LabState> | null;
    return s?.version === 1 && s.prefix === prefix && typeof s.ownerPid === 'number' ? s as LabState : undefined;
  } catch {
    return undefined; // torn or foreign: treated as no state; teardown still goes by names
  }
}

export function writeState(state: LabState): void {
  mkdirSync(stateDir(state.prefix), { recursive: true, mode: 0o700 });
  const tmp = `${stateFile(state.prefix)}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, stateFile(state.prefix));
}

export function removeState(prefix: string): void {
  rmSync(stateDir(prefix), { recursive: true, force: true });
}

/** Whether the state's owner is still the very process that wrote it. */
export function ownerAlive(state: LabState): boolean {
  return readCmdline(state.ownerPid) === state.ownerCmdline;
}
