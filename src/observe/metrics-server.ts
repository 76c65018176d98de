import { Server, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StatusPage, type StatusPageOptions } from '../control/status-page.js';
import type { ViewSource } from '../control/relay-view.js';
import { Registry } from 'prom-client';
import { ListenError } from '../errors.js';

/** What the server renders: a registry (Metrics), or the supervisor's sum over its workers. */
export interface MetricsSource {
  render(): string | Promise<string>;
  /** The exposition's content type, as prom-client names it (default: Prometheus text 0.0.4). */
  readonly contentType?: string;
}

/**
 * An HTTP server whose close() also ends the status page's event streams: they never end
 * by themselves, and server.close() waits for every open response.
 */
class MetricsHttpServer extends Server {
  #page: StatusPage | undefined;

  constructor(metrics: MetricsSource, page: StatusPage | undefined) {
    super((req, res) => { route(metrics, page, req, res); });
    this.#page = page;
  }

  override close(callback?: (err?: Error) => void): this {
    this.#page?.close();
    this.#page = undefined;
    return super.close(callback);
  }
}

function route(metrics: MetricsSource, page: StatusPage | undefined, req: IncomingMessage, res: ServerResponse): void {
  if (req.method === 'GET' && req.url === '/metrics') {
    Promise.resolve(metrics.render()).then(
      (text) => { res.writeHead(200, { 'content-type': metrics.contentType ?? Registry.PROMETHEUS_CONTENT_TYPE }).end(text); },
      (err: unknown) => { res.writeHead(503, { 'content-type': 'text/plain' }).end(`metrics unavailable: ${String(err)}\n`); },
    );
  } else if (req.method === 'GET' && req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
  } else if (page?.handle(req, res) !== true) {
    const more = page === undefined ? '' : ', / (the status page), /status.json or /events';
    res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: try /metrics, /healthz${more}\n`);
  }
}

/**
 * GET /metrics (Prometheus text) and GET /healthz on a small HTTP server; with `views`,
 * the live status page too (/, /status.json, /events: see src/control/status-page.ts).
 */
export async function startMetricsServer(
  metrics: MetricsSource, host: string, port: number,
  views?: ViewSource, pageOptions?: Partial<StatusPageOptions>,
): Promise<Server> {
  // Built first: invalid page options fail before anything listens.
  const page = views === undefined ? undefined : new StatusPage(views, pageOptions);
  const server = new MetricsHttpServer(metrics, page);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new ListenError(`cannot listen on ${host}:${port} (metrics): ${err.code ?? err.message}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(port, host, () => { server.off('error', onError); resolve(); });
  });
  return server;
}

export function serverAddress(server: { address(): AddressInfo | string | null }): AddressInfo {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('server is not listening on TCP');
  return address;
}

/** Stops a node:http server (this one, or the control API's) and ends its open connections, keep-alive and event streams included. */
export async function closeHttpServer(server: Server | undefined): Promise<void> {
  if (server !== undefined) await new Promise<void>((r) => { server.close(() => { r(); }); server.closeAllConnections(); });
}
