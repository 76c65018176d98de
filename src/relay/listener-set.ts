import type { Server, AddressInfo } from 'node:net';
import type { Logger } from '../observe/logger.js';
import type { Endpoint } from '../config/relay-config.js';
import { serverAddress } from '../observe/metrics-server.js';
import { ListenError } from '../errors.js';
import { formatEndpoint } from '../config/load-config.js';

export interface WantedListener {
  readonly endpoint: Endpoint;
  readonly make: () => Server;
}

/**
 * Where a listener's socket comes from. In one process (Relay.start in tests and
 * libraries) Node binds it: nodeListenerSource(). In a worker thread the supervisor's
 * sys layer has made one SO_REUSEPORT fd per worker and endpoint, steered by the
 * SK_REUSEPORT program, and the worker adopts its own (src/worker/worker-main.ts).
 */
export interface ListenerSource {
  /** Makes `server` listen for `key` on `endpoint`; rejects with the listen error. */
  listen(server: Server, key: string, endpoint: Endpoint): Promise<void>;
  /** The listener for `key` was closed (by a reload or the drain). */
  closed?(key: string): void;
}

/** Node binds the socket, with `backlog` (Node's default would be 511). */
export function nodeListenerSource(backlog: number): ListenerSource {
  return {
    listen: (server, _key, endpoint) => new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: endpoint.port, host: endpoint.host, backlog }, () => {
        server.off('error', reject);
        resolve();
      });
    }),
  };
}

/**
 * The relay's listening sockets, by key. `sync()` binds every new listener before it
 * closes any old one, so a config change never leaves a gap in which connections are
 * refused, and a change that cannot bind changes nothing.
 */
export class ListenerSet {
  readonly #servers = new Map<string, Server>();
  readonly #logger: Logger;
  readonly #source: ListenerSource;

  constructor(logger: Logger, source: ListenerSource = nodeListenerSource(511)) {
    this.#logger = logger;
    this.#source = source;
  }

  keys(): string[] {
    return [...this.#servers.keys()];
  }

  address(key: string): AddressInfo | undefined {
    const server = this.#servers.get(key);
    return server === undefined ? undefined : serverAddress(server);
  }

  /** Throws ListenError (and leaves the set as it was) when a new listener cannot bind. */
  async sync(wanted: ReadonlyMap<string, WantedListener>): Promise<void> {
    const opened: [string, Server][] = [];
    try {
      for (const [key, { endpoint, make }] of wanted) {
        if (this.#servers.has(key)) continue;
        const server = make();
        await listen(this.#source, server, endpoint, key);
        opened.push([key, server]);
      }
    } catch (err) {
      for (const [key, server] of opened) this.#close(key, server);
      throw err;
    }
    for (const [key, server] of this.#servers) {
      if (wanted.has(key)) continue;
      this.#servers.delete(key);
      this.#close(key, server);
      this.#logger.info({ event: 'unlisten', listener: key }, 'listener closed');
    }
    for (const [key, server] of opened) {
      this.#servers.set(key, server);
      // After listen() succeeded, errors are accept() failures (EMFILE and the like): log
      // them; an 'error' without a listener would bring the whole relay down.
      server.on('error', (err: NodeJS.ErrnoException) => {
        this.#logger.error({ event: 'listener-error', listener: key, code: err.code }, `listener error: ${err.message}`);
      });
      this.#logger.info({ event: 'listen', listener: key, address: serverAddress(server) }, 'listening');
    }
  }

  /**
   * Closes the listening sockets now. Not awaited: net.Server's close callback waits for
   * every connection it accepted to end, and draining is the relay's job.
   */
  closeAll(): void {
    for (const [key, server] of this.#servers) this.#close(key, server);
    this.#servers.clear();
  }

  #close(key: string, server: Server): void {
    server.close();
    this.#source.closed?.(key);
  }
}

async function listen(source: ListenerSource, server: Server, endpoint: Endpoint, what: string): Promise<void> {
  try {
    await source.listen(server, what, endpoint);
  } catch (err) {
    if (err instanceof ListenError) throw err;
    const e = err as NodeJS.ErrnoException;
    throw new ListenError(`cannot listen on ${formatEndpoint(endpoint)} (${what.split(' ')[0] ?? what}): ${e.code ?? e.message}`, { cause: err });
  }
}
