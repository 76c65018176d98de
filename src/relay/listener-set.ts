import type { Server, AddressInfo } from 'node:net';
import type { Logger } from '../observe/logger.js';
import type { Endpoint } from '../config/relay-config.js';
import { serverAddress } from '../observe/metrics-server.js';
import { ListenError } from '../errors.js';
import { formatEndpoint } from '../config/load-config.js';
import { createListenerFd, listenOnFd, type SocketOptions } from '../sys/index.js';

export interface WantedListener {
  readonly endpoint: Endpoint;
  readonly make: () => Server;
  /**
   * Options the socket needs before bind (IP_TRANSPARENT for TPROXY): the fd is then made
   * by the sys layer's socket factory and handed to the server. `host` must be an IP literal.
   */
  readonly socketOptions?: SocketOptions;
}

/**
 * Where a listener's socket comes from. In one process (Relay.start in tests and
 * libraries) it is made here: nodeListenerSource(). In a worker thread the supervisor's
 * sys layer has made one SO_REUSEPORT fd per worker and endpoint, steered by the
 * SK_REUSEPORT program, and the worker adopts its own (src/worker/worker-main.ts).
 */
export interface ListenerSource {
  /** Makes `server` listen for `key` on `endpoint`, with `socketOptions` set before bind; rejects with the listen error. */
  listen(server: Server, key: string, endpoint: Endpoint, socketOptions: SocketOptions | undefined): Promise<void>;
  /** The listener for `key` was closed (by a reload or the drain). */
  closed?(key: string): void;
}

/**
 * In this process: Node binds the socket, with `backlog` (Node's default would be 511);
 * a listener that needs options before bind gets its fd from the socket factory.
 */
export function nodeListenerSource(backlog: number): ListenerSource {
  return {
    listen: (server, _key, endpoint, socketOptions) => new Promise<void>((resolve, reject) => {
      const onListening = (): void => {
        server.off('error', reject);
        resolve();
      };
      server.once('error', reject);
      if (socketOptions === undefined) {
        server.listen({ port: endpoint.port, host: endpoint.host, backlog }, onListening);
        return;
      }
      let fd: number;
      try {
        fd = createListenerFd({ ...socketOptions, host: endpoint.host, port: endpoint.port, backlog });
      } catch (err) {
        server.off('error', reject);
        reject(new ListenError((err as Error).message, { cause: err }));
        return;
      }
      server.once('listening', onListening);
      listenOnFd(server, fd, backlog);
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
      for (const [key, { endpoint, make, socketOptions }] of wanted) {
        if (this.#servers.has(key)) continue;
        const server = make();
        await listen(this.#source, server, endpoint, key, socketOptions);
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

async function listen(source: ListenerSource, server: Server, endpoint: Endpoint, what: string, socketOptions?: SocketOptions): Promise<void> {
  try {
    await source.listen(server, what, endpoint, socketOptions);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = err instanceof ListenError ? e.message : e.code ?? e.message;
    throw new ListenError(`cannot listen on ${formatEndpoint(endpoint)} (${what.split(' ')[0] ?? what}): ${why}`, { cause: err });
  }
}
