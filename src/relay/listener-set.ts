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
 * The relay's listening sockets, by key. `sync()` binds every new listener before it
 * closes any old one, so a config change never leaves a gap in which connections are
 * refused, and a change that cannot bind changes nothing.
 */
export class ListenerSet {
  readonly #servers = new Map<string, Server>();
  readonly #logger: Logger;

  constructor(logger: Logger) {
    this.#logger = logger;
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
        await listen(server, endpoint, key, socketOptions);
        opened.push([key, server]);
      }
    } catch (err) {
      for (const [, server] of opened) server.close();
      throw err;
    }
    for (const [key, server] of this.#servers) {
      if (wanted.has(key)) continue;
      this.#servers.delete(key);
      server.close();
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
    for (const server of this.#servers.values()) server.close();
    this.#servers.clear();
  }
}

async function listen(server: Server, endpoint: Endpoint, what: string, socketOptions?: SocketOptions): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new ListenError(`cannot listen on ${formatEndpoint(endpoint)} (${what.split(' ')[0] ?? what}): ${err.code ?? err.message}`, { cause: err }));
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    if (socketOptions === undefined) {
      server.listen(endpoint.port, endpoint.host, onListening);
      return;
    }
    let fd: number;
    try {
      fd = createListenerFd({ ...socketOptions, host: endpoint.host, port: endpoint.port });
    } catch (err) {
      server.off('error', onError);
      reject(new ListenError(`cannot listen on ${formatEndpoint(endpoint)} (${what.split(' ')[0] ?? what}): ${(err as Error).message}`, { cause: err }));
      return;
    }
    server.once('listening', onListening);
    listenOnFd(server, fd);
  });
}
