import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { addressOf, type Lab } from '../lab/index.js';
import { RelayProcess } from './relay-process.js';

export const RC_LISTEN_PORT = 8080;
export const RS_ACCEPT_PORT = 7000;

export interface LabRelays {
  readonly rc: RelayProcess;
  readonly rs: RelayProcess;
  /** http://R_C/... : a URL on the server's path address, reached through the relays. */
  url(file: string): string;
  stop(): Promise<void>;
}

/**
 * The paper's relay pair in a lab: R_S in 'rs' accepting from R_C and allowed to
 * connect only to the server's subnet, R_C in 'rc' forwarding RC_LISTEN_PORT to the
 * server's port `serverPort` through R_S. A fresh key is written to `dir` (mode 600).
 */
export async function startLabRelays(lab: Lab, dir: string, serverPort: number): Promise<LabRelays> {
  const keyFile = join(dir, 'relay.key');
  writeFileSync(keyFile, randomBytes(32), { mode: 0o600 });
  const rsAddr = addressOf('rs', 'rc');
  const rcAddr = addressOf('rc', 'client');
  const started: RelayProcess[] = [];
  const stop = async (): Promise<void> => { await Promise.all(started.map((r) => r.stop())); };
  try {
    const rs = new RelayProcess(['--accept', `${rsAddr}:${RS_ACCEPT_PORT}`, '--key-file', keyFile, '--allow', '198.18.3.0/24'],
      { spawner: (cmd, args) => lab.spawn('rs', cmd, args) });
    started.push(rs);
    await rs.ready();
    const rc = new RelayProcess(['-L', `${rcAddr}:${RC_LISTEN_PORT}:${addressOf('server', 'path')}:${serverPort}`,
      '--peer', `rs=${rsAddr}:${RS_ACCEPT_PORT}`, '--route', '198.18.3.0/24=rs', '--key-file', keyFile],
    { spawner: (cmd, args) => lab.spawn('rc', cmd, args) });
    started.push(rc);
    await rc.ready();
    return { rc, rs, url: (file) => `http://${rcAddr}:${RC_LISTEN_PORT}/${file}`, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
