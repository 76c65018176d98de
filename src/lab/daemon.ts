/**
 * The lab daemon: `tcpsplit lab up` starts this file as a detached process. It owns
 * the lab (TUN fds and emulator threads), answers status requests on a unix socket,
 * and tears everything down on SIGTERM/SIGINT/SIGHUP.
 *
 *   node daemon.js --prefix tsl --profile-file /run/tcpsplit/lab-tsl.profile.json
 *
 * Readiness goes to fd 3 (a pipe from `lab up`): one JSON line, {"ok":true} or
 * {"ok":false,"code":...,"message":...}, then fd 3 is closed.
 */
import { closeSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { createServer } from 'node:http';
import { listenUnix } from '../control/unix-http.js';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { errorCode, LabError } from '../errors.js';
import { createLogger } from '../observe/logger.js';
import { Lab, type LabWebStatus } from './lab.js';
import { LAB_WEB_FILES, startNginx, type NginxServer } from './nginx.js';
import { stateDir } from './lab-state.js';
import type { LabProfile } from './link-config.js';

const READY_FD = 3;

function report(message: object): void {
  try {
    writeSync(READY_FD, `${JSON.stringify(message)}\n`);
    closeSync(READY_FD);
  } catch {
    // started by hand without fd 3: nothing to tell
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { prefix: { type: 'string' }, 'profile-file': { type: 'string' }, ipv6: { type: 'boolean' }, 'no-web': { type: 'boolean' } },
    strict: true,
  });
  if (values.prefix === undefined || values['profile-file'] === undefined) {
    throw new Error('usage: daemon.js --prefix P --profile-file FILE');
  }
  const logger = createLogger('info', 'tcpsplit-lab');
  const profile = JSON.parse(readFileSync(values['profile-file'], 'utf8')) as LabProfile;
  rmSync(values['profile-file'], { force: true }); // read once; nothing left behind
  const controlSocket = join(stateDir(values.prefix), 'control.sock');

  // Handlers first: a signal while the lab is being built must still tear it down.
  let stopSignal: string | undefined;
  let stop: (signal: string) => void = (signal) => { stopSignal ??= signal; };
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => { stop(signal); });

  const lab = await Lab.create({ prefix: values.prefix, profile, logger, ownerKind: 'daemon', controlSocket, ipv6: values.ipv6 === true });
  // nginx in 'server' with the paper's files, so that `lab exec client -- curl` works at once.
  let web: NginxServer | undefined;
  let webStatus: LabWebStatus | undefined;
  if (values['no-web'] !== true && stopSignal === undefined) {
    try {
      web = await startNginx(lab, { files: LAB_WEB_FILES, port: 80 });
    } catch (err) {
      await lab.destroy();
      throw err;
    }
    webStatus = { port: web.port, files: LAB_WEB_FILES, path: web.url('path', ''), internet: web.url('internet', '') };
  }
  // One route on the same private unix-socket HTTP layer as the relay's control API.
  const server = createServer((req, res) => {
    req.resume();
    if (req.method !== 'GET' || req.url !== '/v1/status') {
      res.writeHead(404, { 'content-type': 'application/json' }).end(`${JSON.stringify({ error: { code: LabError.code, message: 'try GET /v1/status' } })}\n`);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify({ ...lab.status(), ...(webStatus === undefined ? {} : { web: webStatus }) })}\n`);
  });
  let stopping = false;
  stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping lab');
    server.close();
    Promise.resolve(web?.stop()).then(() => lab.destroy()).then(
      () => { process.exit(0); },
      (err: unknown) => { logger.error({ err }, 'teardown failed'); process.exit(1); },
    );
  };
  if (stopSignal !== undefined) {
    report({ ok: false, code: LabError.code, message: `stopped by ${stopSignal} while the lab was being built` });
    stop(stopSignal);
    return;
  }
  try {
    await listenUnix(server, controlSocket, 'lab daemon');
  } catch (err) {
    await lab.destroy();
    throw err;
  }
  logger.info({ prefix: lab.prefix, controlSocket }, 'lab ready');
  report({ ok: true, pid: process.pid });
}

main().catch((err: unknown) => {
  report({ ok: false, code: errorCode(err), message: err instanceof Error ? err.message : String(err) });
  process.stderr.write(`lab daemon: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
