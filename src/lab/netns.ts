/**
 * Network namespaces by name (/run/netns, as `ip netns` keeps them), and the processes
 * inside one. A process is counted as inside a namespace only when its
 * /proc/PID/ns/net is that namespace's inode, so teardown never signals a process
 * outside the lab's namespaces.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { runChecked } from './command.js';

export const NETNS_DIR = '/run/netns';

export function namespaceExists(name: string): boolean {
  return existsSync(join(NETNS_DIR, name));
}

export function listNamespaces(): string[] {
  try {
    return readdirSync(NETNS_DIR);
  } catch {
    return [];
  }
}

function nsIdentity(path: string): string | undefined {
  try {
    const s = statSync(path);
    return `${s.dev}:${s.ino}`;
  } catch {
    return undefined;
  }
}

/** Pids of the processes whose network namespace is `name`. */
export function processesIn(name: string): number[] {
  const target = nsIdentity(join(NETNS_DIR, name));
  if (target === undefined) return [];
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    if (nsIdentity(`/proc/${entry}/ns/net`) === target) pids.push(pid);
  }
  return pids;
}

/** Running, not just present: a zombie (state Z, waiting for its parent to reap it) counts as gone. */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** SIGTERM to every process in the namespace, SIGKILL to those left after `graceMs`. */
export async function killProcessesIn(name: string, graceMs = 2000): Promise<number> {
  const pids = processesIn(name);
  for (const pid of pids) {
    try { process.kill(pid, 'SIGTERM'); } catch { /* already gone */ }
  }
  const deadline = Date.now() + graceMs;
  while (pids.some(isRunning) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  // Re-check membership before SIGKILL: a pid may have been reused since.
  const stubborn = new Set(processesIn(name));
  for (const pid of pids) {
    if (stubborn.has(pid)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  }
  return pids.length;
}

export async function addNamespace(name: string): Promise<void> {
  await runChecked('ip', ['netns', 'add', name]);
}

export async function deleteNamespace(name: string): Promise<void> {
  if (namespaceExists(name)) await runChecked('ip', ['netns', 'delete', name]);
}
