import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ListenError } from '../errors.js';

/** What the server renders: a registry (Metrics), or the supervisor's sum over its workers. */
export interface MetricsSource {
  render(): Promise<string>;
  /** The exposition's content type, as prom-client names it. */
  readonly contentType: string;
}

/** GET /metrics (Prometheus text) and GET /healthz on a small HTTP server. */
export async function startMetricsServer(metrics: MetricsSource, host: string, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/metrics') {
      metrics.render().then(
        (text) => { res.writeHead(200, { 'content-type': metrics.contentType }).end(text); },
        (err: unknown) => { res.writeHead(503, { 'content-type': 'text/plain' }).end(`metrics unavailable: ${String(err)}\n`); },
      );
    } else if (req.method === 'GET' && req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /healthz\n');
    }
  });
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
