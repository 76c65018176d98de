import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import type { ProcessGroup, Started } from './process-group.js';
import { freePort, waitForListen } from './proc-stats.js';

/** The servers behind the proxies: iperf3, nginx, and an in-process server that holds connections. */

export interface Backend {
  readonly port: number;
  readonly proc: Started;
}

/** `iperf3 -s -1` on `port`: serves one test, then exits. */
export async function startIperf3Server(group: ProcessGroup, dir: string, port: number): Promise<Backend> {
  const proc = group.start('iperf3 -s', 'iperf3', ['-s', '-1', '-B', '127.0.0.1', '-p', String(port)], join(dir, `iperf3-server-${port}.log`));
  await waitForListen(port, proc);
  return { port, proc };
}

/** The file wrk fetches: small, so the test measures connection set-up, not bytes. */
const TINY_FILE = 'hello, relay\n';

/**
 * nginx with a generated config: worker_processes auto, no access log, one tiny file.
 * Runs in the foreground (daemon off) so the pid we track is the master.
 */
export async function startNginx(group: ProcessGroup): Promise<Backend> {
  const dir = group.tempDir('nginx');
  // Workers drop root privileges (to nobody): they must be able to read the file.
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'www'), { mode: 0o755 });
  writeFileSync(join(dir, 'www', 'index.html'), TINY_FILE, { mode: 0o644 });
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, [
    'worker_processes auto;',
    'daemon off;',
    `pid ${join(dir, 'nginx.pid')};`,
    `error_log ${join(dir, 'error.log')} warn;`,
    'events { worker_connections 4096; }',
    'http {',
    '  access_log off;',
    '  keepalive_timeout 0;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${join(dir, t)};`),
    '  server {',
    `    listen 127.0.0.1:${port} backlog=4096;`,
    `    root ${join(dir, 'www')};`,
    '  }',
    '}',
    '',
  ].join('\n'));
  const proc = group.start('nginx', 'nginx', ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')], join(dir, 'nginx.out'));
  await waitForListen(port, proc);
  return { port, proc };
}

/**
 * A TCP server that holds every connection open. Each connection answers one byte to
 * the client's first byte: both directions of the split connection have carried data
 * once, as in a real idle keep-alive connection, before we measure.
 */
export class HoldServer {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  port = 0;

  constructor() {
    this.#server = createServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => undefined);
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      socket.once('data', () => socket.write('y'));
    });
  }

  get open(): number {
    return this.#sockets.size;
  }

  async listen(): Promise<void> {
    this.port = await freePort();
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ port: this.port, host: '127.0.0.1', backlog: 4096 }, resolve);
    });
  }

  dropAll(): void {
    for (const s of this.#sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => this.#server.close(() => { resolve(); }));
  }
}
