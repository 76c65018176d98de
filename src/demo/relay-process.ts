import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The tcpsplit CLI entry point (dist/src/cli/main.js next to this file once built). */
export const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export interface LogLine {
  readonly [key: string]: unknown;
  readonly msg?: string;
  readonly event?: string;
}

/** How to start a process: plain spawn, or inside a lab namespace (Lab.spawn). */
export type Spawner = (cmd: string, args: string[]) => ChildProcess;

const plainSpawn: Spawner = (cmd, args) => spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });

/**
 * `--workers $TCPSPLIT_TEST_WORKERS` when that is set and `args` name no count: how
 * scripts/test.sh runs every relay test with two workers on one Node and one on the other.
 */
export function workersArgs(args: readonly string[], env: NodeJS.ProcessEnv = process.env): string[] {
  const workers = env['TCPSPLIT_TEST_WORKERS'];
  if (workers === undefined || workers === '' || args.some((a) => a === '--workers' || a.startsWith('--workers='))) return [];
  return ['--workers', workers];
}

/** A `tcpsplit relay` child process, with its JSON log lines collected as they arrive. */
export class RelayProcess {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  readonly exited: Promise<number | null>;
  #waiters: { match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];

  constructor(args: string[], options: { env?: NodeJS.ProcessEnv; spawner?: Spawner } = {}) {
    const { env } = options;
    const spawner = options.spawner ?? (env === undefined ? plainSpawn
      : (cmd: string, a: string[]) => spawn(cmd, a, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }));
    this.child = spawner(process.execPath, [CLI, 'relay', ...workersArgs(args, { ...process.env, ...env }), ...args]);
    this.exited = once(this.child, 'exit').then(([code]) => code as number | null);
    const stderr = this.child.stderr;
    if (stderr === null) throw new Error('relay process needs a piped stderr');
    createInterface({ input: stderr }).on('line', (text) => {
      let line: LogLine;
      try { line = JSON.parse(text) as LogLine; } catch { line = { msg: text }; }
      this.lines.push(line);
      this.#waiters = this.#waiters.filter((w) => { if (w.match(line)) { w.resolve(line); return false; } return true; });
    });
  }

  /** Resolves with the first log line (past or future) that matches. */
  waitFor(match: (l: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> {
    const seen = this.lines.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`no matching relay log line within ${timeoutMs} ms; last lines: ${JSON.stringify(this.lines.slice(-3))}`));
      }, timeoutMs);
      this.#waiters.push({ match, resolve: (l) => { clearTimeout(timer); resolve(l); } });
    });
  }

  /** The ports from the 'ready' line: forward listeners in order, and accept. */
  async ready(): Promise<{ forward: number[]; accept: number | undefined }> {
    const line = await Promise.race([
      this.waitFor((l) => l.event === 'ready'),
      this.exited.then((code) => {
        throw new Error(`relay exited with ${code} before it was ready: ${this.lines.map((l) => l.msg).join(' | ')}`);
      }),
    ]);
    const forward = (line['forward'] as { port: number }[]).map((a) => a.port);
    const accept = (line['accept'] as { port: number } | undefined)?.port;
    return { forward, accept };
  }

  rssBytes(): number {
    const status = readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) * 1024;
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 2000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
