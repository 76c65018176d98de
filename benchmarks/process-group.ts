import { setTimeout as sleep } from 'node:timers/promises';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Every process and temp dir a benchmark run makes, so that all of it goes away at the
 * end: on success, on failure and on Ctrl-C. Children run in their own process group
 * (detached), so a signal to the group also reaches what they fork (socat's per-connection
 * children, nginx's workers) and nothing else; Ctrl-C in the terminal reaches only us,
 * and we stop them in order.
 */

export interface Started {
  readonly name: string;
  readonly pid: number;
  /** stdout and stderr of the process, in its temp dir. */
  readonly logPath: string;
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  readonly hasExited: () => boolean;
}

interface Tracked extends Started {
  readonly child: ChildProcess;
}


export class ProcessGroup {
  readonly #running = new Map<number, Tracked>();
  readonly #dirs = new Set<string>();

  /** A fresh temp dir, removed by `cleanup()`. */
  tempDir(label: string): string {
    const dir = mkdtempSync(join(tmpdir(), `tcpsplit-bench-${label}-`));
    this.#dirs.add(dir);
    return dir;
  }

  /** Starts `command` with its output in `logPath`. Throws if it cannot be started. */
  start(name: string, command: string, args: readonly string[], logPath: string): Started {
    const fd = openSync(logPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn(command, args, { detached: true, stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd); // the child holds its own copy
    }
    const { pid } = child;
    if (pid === undefined) {
      child.on('error', () => undefined);
      throw new Error(`cannot start ${name} (${command}): not installed? run scripts/setup.sh`);
    }
    let done = false;
    const exited = new Promise<number | null>((resolve) => {
      child.once('exit', (code) => {
        done = true;
        this.#running.delete(pid);
        // Whatever the leader forked and left behind (socat children) goes with it.
        killGroup(pid, 'SIGKILL');
        resolve(code);
      });
    });
    child.on('error', () => undefined);
    const tracked: Tracked = { name, pid, logPath, exited, hasExited: () => done, child };
    this.#running.set(pid, tracked);
    return tracked;
  }

  /** Process groups still running (each leader's pid is its group's id). */
  groups(): number[] {
    return [...this.#running.keys()];
  }

  /** SIGTERM to the process group, SIGKILL after `graceMs`; resolves once the leader is gone. */
  async stop(proc: Started, graceMs = 3000): Promise<void> {
    if (proc.hasExited()) return;
    killGroup(proc.pid, 'SIGTERM');
    const gone = await Promise.race([proc.exited.then(() => true), sleep(graceMs).then(() => false)]);
    if (gone) return;
    killGroup(proc.pid, 'SIGKILL');
    await Promise.race([proc.exited, sleep(2000)]);
  }

  /** Stops everything still running and removes the temp dirs. */
  async cleanup(): Promise<void> {
    await Promise.all([...this.#running.values()].map((p) => this.stop(p)));
    this.#removeDirs();
  }

  /** For process 'exit': no time left for grace, so SIGKILL whatever is still running. */
  cleanupSync(): void {
    for (const pid of this.#running.keys()) killGroup(pid, 'SIGKILL');
    this.#running.clear();
    this.#removeDirs();
  }

  #removeDirs(): void {
    for (const dir of this.#dirs) rmSync(dir, { recursive: true, force: true });
    this.#dirs.clear();
  }
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}
