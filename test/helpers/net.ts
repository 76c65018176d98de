import { createServer, connect, type Server, type Socket, type AddressInfo } from 'node:net';
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadRelayConfig } from '../../src/config/load-config.js';
import { Relay } from '../../src/relay/relay.js';
import { pendingSocketError } from '../../src/sys/index.js';
import { silentLogger, type Logger } from '../../src/observe/logger.js';

export const KEY_HEX = randomBytes(32).toString('hex');

/**
 * A TCP server on 127.0.0.1:0 with allowHalfOpen; tracks its sockets (open ones in
 * `sockets`) so close() is complete. `backlog` for bursts larger than Node's 511.
 */
export async function tcpServer(onSocket: (socket: Socket) => void, options: { backlog?: number } = {}): Promise<{ server: Server; port: number; sockets: ReadonlySet<Socket>; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onSocket(socket);
  });
  server.listen({ port: 0, host: '127.0.0.1', ...(options.backlog === undefined ? {} : { backlog: options.backlog }) });
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    sockets,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => { r(); }));
    },
  };
}

export async function dial(port: number): Promise<Socket> {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  await once(socket, 'connect');
  return socket;
}

/** Starts an in-process relay from CLI-style flags (the real config path); key from KEY_HEX. */
export async function startRelay(flags: string[], logger: Logger = silentLogger()): Promise<Relay> {
  const { config } = await loadRelayConfig(flags, { TCPSPLIT_KEY: KEY_HEX });
  return Relay.start(config, { logger });
}

/**
 * A chain of relays on loopback ending at 127.0.0.1:targetPort:
 * relays[0] has the forward listener (-L), each next one accepts from the previous.
 * Returns the port clients connect to.
 */
export async function startChain(length: number, targetPort: number, extra: string[] = []): Promise<{ relays: Relay[]; port: number }> {
  const relays: Relay[] = [];
  // Built from the server end back, so each relay knows its next peer's port.
  let nextPeerPort: number | undefined;
  for (let i = length - 1; i >= 0; i--) {
    const flags = [...extra];
    if (i > 0) flags.push('--accept', '127.0.0.1:0');
    if (i === 0) flags.push('-L', `127.0.0.1:0:127.0.0.1:${targetPort}`);
    if (i === length - 1) flags.push('--allow', '127.0.0.1/32');
    if (nextPeerPort !== undefined) flags.push('--peer', `next=127.0.0.1:${nextPeerPort}`, '--route', '0.0.0.0/0=next');
    const relay = await startRelay(flags);
    relays.unshift(relay);
    nextPeerPort = relay.addresses().accept?.port;
  }
  const first = relays[0];
  const port = first?.addresses().forward[0]?.port;
  if (port === undefined) throw new Error('chain has no forward listener');
  return { relays, port };
}

/** Writes `total` random bytes with backpressure; resolves with their SHA-256 once all are written. */
export async function sendRandom(socket: Socket, total: number, chunk = 256 * 1024): Promise<string> {
  const hash = createHash('sha256');
  let sent = 0;
  while (sent < total) {
    const piece = randomBytes(Math.min(chunk, total - sent));
    hash.update(piece);
    sent += piece.length;
    if (!socket.write(piece)) await once(socket, 'drain');
  }
  return hash.digest('hex');
}

export interface Received {
  bytes: number;
  sha256: string;
  /** 'end' for a clean FIN, or the error code the socket failed with. */
  outcome: string;
}

/** Reads until the socket ends or fails. */
export function receiveAll(socket: Socket): Promise<Received> {
  const hash: Hash = createHash('sha256');
  let bytes = 0;
  return new Promise((resolve) => {
    socket.on('data', (c: Buffer) => { hash.update(c); bytes += c.length; });
    socket.once('end', () => {
      // libuv may report a reset that arrives right behind data as EOF; ask the kernel.
      const error = pendingSocketError(socket);
      resolve(error === undefined ? { bytes, sha256: hash.digest('hex'), outcome: 'end' } : { bytes, sha256: '', outcome: error });
    });
    socket.once('error', (err: NodeJS.ErrnoException) => { resolve({ bytes, sha256: '', outcome: err.code ?? err.message }); });
  });
}

export const MiB = 1024 * 1024;

/**
 * Reads `read()` every `everyMs` until `done` holds of the value or `timeoutMs` passes,
 * and returns the last value read: the caller asserts on it, so a timeout fails with the
 * value in the message rather than a bare "not met in time".
 */
export async function pollUntil<T>(read: () => T | Promise<T>, done: (value: T) => boolean, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = await read();
  while (!done(value) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, everyMs));
    value = await read();
  }
  return value;
}

/** Polls `cond` every 10 ms until it holds; throws after `timeoutMs`. */
export async function waitFor(cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A free TCP port on 127.0.0.1 for a server we cannot start on port 0 (nginx). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => { r(); }));
  return port;
}

/**
 * nginx on 127.0.0.1 serving `files` (name to contents), one worker, no keep-alive,
 * from a temp dir that stop() removes. Ready once it serves the first file.
 */
export async function loopbackNginx(files: ReadonlyMap<string, Buffer>): Promise<{ port: number; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-test-nginx-'));
  // nginx's workers run as 'nobody': the tree must be world-readable.
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'www'), { mode: 0o755 });
  for (const [name, data] of files) writeFileSync(join(dir, 'www', name), data, { mode: 0o644 });
  const port = await freePort();
  writeFileSync(join(dir, 'nginx.conf'), [
    'daemon off;', 'worker_processes 1;', `pid ${dir}/nginx.pid;`, `error_log ${dir}/error.log warn;`,
    'events { worker_connections 4096; }',
    'http {', '  access_log off;', '  sendfile on;', '  keepalive_timeout 0;', '  default_type application/octet-stream;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${dir}/${t};`),
    `  server { listen 127.0.0.1:${port} backlog=4096; root ${dir}/www; }`, '}', '',
  ].join('\n'));
  const child = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: 'ignore' });
  const exited = once(child, 'exit');
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const first = [...files.keys()][0] ?? '';
  const deadline = Date.now() + 10_000;
  for (;;) {
    const status = await new Promise<number>((resolve) => {
      httpGet({ host: '127.0.0.1', port, path: `/${first}`, agent: false }, (res) => { res.resume(); resolve(res.statusCode ?? 0); })
        .on('error', () => { resolve(0); });
    });
    if (status !== 0) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`nginx did not start on 127.0.0.1:${port}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { port, stop };
}
