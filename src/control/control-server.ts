/**
 * The control API: HTTP with JSON on the relay's unix socket (docs/control.md).
 *
 *   GET   /v1/view          everything a person sees (RelayView): workers, peers and
 *                           pools, routes, connections, errors, switches
 *   GET   /v1/config        the running config as a document, and the run-time changes
 *   GET   /v1/config/diff   how the running config differs from the file
 *   PATCH /v1/config        {option: value, ...}; null drops an earlier change
 *   POST  /v1/reload        re-read the file (as SIGHUP): run-time changes are dropped
 *
 * Errors: {"error": {"code": "TCPSPLIT_ERR_...", "message": "..."}} with 400 (a bad
 * request or value: nothing changed), 404, 405, 409 (restart-only option) or 500.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from '../observe/logger.js';
import type { ViewSource } from './relay-view.js';
import { ControlPlane, type Reloadable } from './control-plane.js';
import { documentOf } from '../config/config-document.js';
import { listenUnix, readJsonBody } from './unix-http.js';
import { ConfigError, ControlRequestError, errorCode, KeyError, ListenError, RestartRequiredError, InsecureAcceptError } from '../errors.js';
import { closeHttpServer } from '../observe/metrics-server.js';

type Handler = (req: IncomingMessage) => Promise<unknown>;

export class ControlServer {
  readonly #server: Server;
  readonly path: string;

  private constructor(server: Server, path: string) {
    this.#server = server;
    this.path = path;
  }

  static async listen(path: string, relay: Reloadable & ViewSource, plane: ControlPlane, logger: Logger): Promise<ControlServer> {
    const routes: Readonly<Record<string, Partial<Record<string, Handler>>>> = {
      '/v1/view': { GET: () => relay.view() },
      '/v1/config': {
        GET: () => Promise.resolve({ running: documentOf(relay.config), overrides: plane.overrides, file: relay.config.configFile ?? null }),
        PATCH: async (req) => ({ changed: await plane.change(await readJsonBody(req), 'ctl') }),
      },
      '/v1/config/diff': { GET: async () => ({ changes: await plane.diff() }) },
      '/v1/reload': { POST: async () => ({ changed: await plane.reloadFile('ctl') }) },
    };
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://control');
      const route = routes[url.pathname];
      const handler = route?.[req.method ?? 'GET'];
      if (route === undefined || handler === undefined) {
        req.resume();
        const err = new ControlRequestError(route === undefined
          ? `no ${url.pathname}: try ${Object.keys(routes).join(', ')}`
          : `${req.method ?? ''} ${url.pathname}: use ${Object.keys(route).join(' or ')}`);
        reply(res, route === undefined ? 404 : 405, { error: { code: err.code, message: err.message } });
        return;
      }
      handler(req).then(
        (body) => { reply(res, 200, body); },
        (err: unknown) => {
          const status = statusOf(err);
          if (status === 500) logger.error({ event: 'control', code: errorCode(err), err }, `control request ${req.method ?? ''} ${url.pathname} failed`);
          reply(res, status, { error: { code: errorCode(err), message: err instanceof Error ? err.message : String(err) } });
        },
      );
    });
    await listenUnix(server, path);
    logger.info({ event: 'control', path }, `control API on ${path} (tcpsplit ctl --socket ${path})`);
    return new ControlServer(server, path);
  }

  async close(): Promise<void> {
    await closeHttpServer(this.#server);
  }
}

function statusOf(err: unknown): number {
  if (err instanceof RestartRequiredError) return 409;
  if (err instanceof ConfigError || err instanceof ControlRequestError || err instanceof KeyError || err instanceof InsecureAcceptError || err instanceof ListenError) return 400;
  return 500;
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
}
