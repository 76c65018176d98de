/**
 * Running the system tools the lab drives (ip, sysctl, nginx, ...): a promise of
 * {code, stdout, stderr}, bounded in time and output.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { LabError } from '../errors.js';

export interface CommandResult {
  /** Exit code, or null when killed by a signal. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** Kill the command (SIGKILL) after this long; default 60 s. */
  readonly timeoutMs?: number;
  readonly input?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Called with the child as soon as it exists (for tracking). */
  readonly onSpawn?: (child: ChildProcess) => void;
}

const MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

export function run(cmd: string, args: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const spawnOptions: SpawnOptions = { stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] };
    if (options.env !== undefined) spawnOptions.env = options.env;
    const child = spawn(cmd, args, spawnOptions);
    options.onSpawn?.(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      outBytes += chunk.length;
      if (outBytes <= MAX_OUTPUT_BYTES) into.push(chunk);
    };
    child.stdout?.on('data', collect(out));
    child.stderr?.on('data', collect(err));
    if (options.input !== undefined) {
      child.stdin?.on('error', () => { /* the command may exit before reading its input */ });
      child.stdin?.end(options.input);
    }
    const timer = setTimeout(() => { child.kill('SIGKILL'); }, options.timeoutMs ?? 60_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new LabError(`cannot run ${cmd}: ${e.message}`, { cause: e }));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}

/** run(), throwing a LabError that quotes the command and its stderr unless it exits 0. */
export async function runChecked(cmd: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  const r = await run(cmd, args, options);
  if (r.code !== 0) {
    const why = r.code === null ? `killed by ${r.signal ?? 'a signal'}` : `exit code ${r.code}`;
    throw new LabError(`'${[cmd, ...args].join(' ')}' failed (${why}): ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return r.stdout;
}
