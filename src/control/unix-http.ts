/**
 * HTTP with JSON over a unix socket: the transport of the relay's control API and of the
 * lab daemon's status, server and client.
 *
 * The socket is private: its directory is made mode 0700 (or found owned by us or root,
 * not writable by others unless sticky, like /tmp), and the socket is bound under a umask
 * that makes it 0600 from the first moment, so only root (or the relay's user) can speak
 * to it. A socket file left by a relay that died is replaced;
 * one that still answers belongs to a running relay, and is left alone.
 */
import { chmodSync, lstatSync, mkdirSync, rmSync } from 'node:fs';
import { request, type IncomingMessage, type Server } from 'node:http';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { ControlRequestError, ControlSocketError } from '../errors.js';

/** A request body larger than this is refused (a config change is a few hundred bytes). */
export const MAX_BODY_BYTES = 64 * 1024;

/** Whether something accepts connections on `path` now. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => { resolve(false); });
  });
}

/** Binds `server` on `path` (see the file's comment for the rules). Throws ControlSocketError. */
export async function listenUnix(server: Server, path: string, what = 'control socket'): Promise<void> {
  const dir = dirname(path);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = lstatSync(dir);
    if (!st.isDirectory()) throw new Error('not a directory');
    // A shared directory (e.g. /tmp) is fine only if the socket itself is private from its first moment.
    if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) throw new Error(`mode ${(st.mode & 0o777).toString(8)} lets others replace the socket`);
    // Owned by us or by root: another user's directory would let that user replace the socket.
    const uid = process.getuid?.() ?? 0;
    if (st.uid !== uid && st.uid !== 0) throw new Error(`it belongs to uid ${String(st.uid)}, not to this process (uid ${String(uid)}) or root`);
  } catch (err) {
    throw new ControlSocketError(`${what} ${path}: its directory ${dir} cannot be used: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  let existing = false;
  try {
    existing = lstatSync(path).isSocket();
    if (!existing) throw new ControlSocketError(`${what} ${path}: a file that is not a socket is in the way`);
  } catch (err) {
    if (err instanceof ControlSocketError) throw err;
    // ENOENT: nothing there
  }
  if (existing) {
    if (await answers(path)) throw new ControlSocketError(`${what} ${path}: another ${what === 'control socket' ? 'relay' : 'process'} answers on it${what === 'control socket' ? ' (give this one its own --control path)' : ''}`);
    rmSync(path, { force: true });
  }
  const umask = process.umask(0o177); // bound 0600 from the first moment
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => { server.off('error', reject); resolve(); });
    });
  } catch (err) {
    throw new ControlSocketError(`${what} ${path}: cannot listen: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  } finally {
    process.umask(umask);
  }
  chmodSync(path, 0o600);
}

/**
 * Reads a JSON body of at most MAX_BODY_BYTES; undefined when there is none. Throws
 * ControlRequestError. A body too large is refused at once (by its content-length, or as
 * soon as it passes the limit) and the rest of it is read and dropped, so that the
 * client, still writing, gets its answer rather than a reset or EPIPE (closing the
 * connection early did that on Node 24; Node's request timeout bounds a sender that
 * never stops).
 */
export function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const tooLarge = (): Error => new ControlRequestError(`request body larger than ${MAX_BODY_BYTES} bytes`);
  if (Number(req.headers['content-length'] ?? 0) > MAX_BODY_BYTES) {
    req.resume();
    return Promise.reject(tooLarge());
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        over = true;
        chunks.length = 0;
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', reject);
    req.on('end', () => {
      if (over) return;
      if (size === 0) { resolve(undefined); return; }
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown);
      } catch (err) {
        reject(new ControlRequestError(`request body is not JSON: ${err instanceof Error ? err.message : String(err)}`));
      }
    });
  });
}

export interface JsonReply {
  readonly status: number;
  readonly body: unknown;
}

/** One request to the control socket. Throws ControlSocketError when nothing answers. */
export function requestUnix(socketPath: string, method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<JsonReply> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request({
      socketPath, method, path, timeout: timeoutMs,
      headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': payload.length },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : JSON.parse(text) as unknown });
        } catch {
          resolve({ status: res.statusCode ?? 0, body: text });
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => { req.destroy(new ControlSocketError(`control socket ${socketPath}: no answer within ${timeoutMs} ms`)); });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err instanceof ControlSocketError) { reject(err); return; }
      const why = err.code === 'ENOENT' ? 'no such socket' : err.code === 'ECONNREFUSED' ? 'nothing listens on it' : err.code === 'EACCES' ? 'permission denied (root only)' : err.message;
      reject(new ControlSocketError(`control socket ${socketPath}: ${why}; is the relay running with this --control path?`, { cause: err }));
    });
    req.end(payload);
  });
}
