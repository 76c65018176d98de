import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface LogLine {
  readonly [key: string]: unknown;
  readonly msg?: string;
  readonly event?: string;
}

/** A `tcpsplit relay` child process, with its JSON log lines collected as they arrive. */
export class RelayProcess {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  readonly exited: Promise<number | null>;
  #waiters: { match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.child = spawn(process.execPath, [CLI, 'relay', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = once(this.child, 'exit').then(([code]) => code as number | null);
    const rl = createInterface({ input: this.child.stderr as NodeJS.ReadableStream });
    rl.on('line', (text) => {
      let line: LogLine;
      try { line = JSON.parse(text) as LogLine; } catch { line = { msg: text }; }
      this.lines.push(line);
      this.#waiters = this.#waiters.filter((w) => { if (w.match(line)) { w.resolve(line); return false; } return true; });
    });
  }

  /** Resolves with the first log line (past or future) that matches. */
  waitFor(match: (l: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> {
    const seen = this.lines.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`no matching log line within ${timeoutMs} ms; got: ${JSON.stringify(this.lines.slice(-5))}`)); }, timeoutMs);
      this.#waiters.push({ match, resolve: (l) => { clearTimeout(timer); resolve(l); } });
    });
  }

  /** The ports from the 'ready' line: forward listeners in order, and accept. */
  async ready(): Promise<{ forward: number[]; accept: number | undefined }> {
    const line = await this.waitFor((l) => l.event === 'ready');
    const forward = (line['forward'] as { port: number }[]).map((a) => a.port);
    const accept = (line['accept'] as { port: number } | undefined)?.port;
    return { forward, accept };
  }

  rssBytes(): number {
    const status = readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
    const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
    return Number(kb) * 1024;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}
