/**
 * The paper's Baseline: real OpenSSH port forwarding. sshd (the lab's, src/lab/sshd.ts)
 * runs in 'rs' on its rc-side address; `ssh -N -L` runs in 'rc' and listens on rc's
 * client-side address. The session is set up once, before the runs; each download is
 * then one new channel on it.
 *
 *   const fwd = await startSshForward(lab, { target: '198.18.3.2:80', probeFile: '10kb' });
 *   await lab.exec('client', 'curl', [fwd.url('10kb')]);
 *   await fwd.stop();
 */
import type { ChildProcess } from 'node:child_process';
import { LabError } from '../errors.js';
import { addressOf, startSshd, type Lab, type SshServer } from '../lab/index.js';
import { findTool } from '../lab/tools.js';

export const SSH_FORWARD_PORT = 2080;
const READY_TIMEOUT_MS = 15_000;

export interface SshForward {
  /** http://rc:SSH_FORWARD_PORT/file: through the ssh tunnel to the target. */
  url(file: string): string;
  stop(): Promise<void>;
}

const alive = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;

async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || !alive(child)) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
  if (alive(child)) child.kill('SIGKILL');
}

/** Starts sshd in 'rs' and `ssh -L` in 'rc' forwarding to `target` (host:port), and waits until a download passes. */
export async function startSshForward(lab: Lab, options: { target: string; probeFile: string }): Promise<SshForward> {
  const rsAddr = addressOf('rs', 'rc');
  const rcAddr = addressOf('rc', 'client');
  let server: SshServer | undefined;
  let client: ChildProcess | undefined;
  const stop = async (): Promise<void> => {
    await stopChild(client);
    await server?.stop();
  };
  try {
    server = await startSshd(lab, { node: 'rs', addresses: [rsAddr] });
    const ssh = findTool('ssh') ?? 'ssh';
    const args = [
      '-N', '-L', `${rcAddr}:${String(SSH_FORWARD_PORT)}:${options.target}`,
      '-o', 'ExitOnForwardFailure=yes', '-o', 'GatewayPorts=yes', '-o', 'ServerAliveInterval=30',
      ...server.sshArgs(rsAddr),
    ];
    const errors: string[] = [];
    const url = (file: string): string => `http://${rcAddr}:${String(SSH_FORWARD_PORT)}/${file}`;
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (client === undefined || !alive(client)) {
        client = lab.spawn('rc', ssh, args, { stdio: ['ignore', 'ignore', 'pipe'] });
        client.stderr?.on('data', (b: Buffer) => { if (errors.length < 20) errors.push(b.toString().trim()); });
      }
      const probe = await lab.exec('client', 'curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '3', url(options.probeFile)], { timeoutMs: 5000 });
      if (probe.code === 0 && probe.stdout === '200') break;
      if (Date.now() > deadline) throw new LabError(`the ssh forward did not carry a download within ${String(READY_TIMEOUT_MS / 1000)} s: ${errors.join(' | ') || probe.stderr.trim()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    return { url, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
