/**
 * The supervisor's listening sockets: for each listener key (every -L and --accept),
 * one SO_REUSEPORT fd per worker, made by the sys layer's socket factory with the
 * backlog set, and a ReuseportGroup whose SK_REUSEPORT program hands each connection to
 * the worker steer() names (src/net/steer.ts). Worker k adopts its fd with
 * `listen({ fd }, backlog)`; being threads of one process, supervisor and workers share
 * the fd table, so an fd number is all that crosses.
 *
 * Fds are made when a worker asks for its key (at start, at a reload that adds a
 * listener, when a replacement worker starts): the first one binds (port 0 becomes a
 * port), the others join that port. A worker that dies takes its fds with it (Node
 * closes a terminated thread's handles; the kernel empties its map slot, and the
 * program's fallback sends its share of connections to the others meanwhile); its
 * replacement gets fresh fds, put in the same slot.
 *
 * Without the steering program (no CAP_BPF/CAP_SYS_ADMIN, or an old kernel) the group
 * is plain SO_REUSEPORT: the kernel's own hash spreads connections, steer() no longer
 * names the worker, and the supervisor says so once in the log.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Endpoint } from '../config/relay-config.js';
import type { Logger } from '../observe/logger.js';
import { errorCode, SysCallError } from '../errors.js';
import { boundPort, close, createListenerFd, errnoName, ReuseportGroup, socketCookie, type SocketOptions } from '../sys/index.js';
import type { WireError } from './messages.js';

interface Slot {
  readonly fd: number;
  /** Tells this socket from a later one that reuses the fd number. */
  readonly cookie: bigint;
  handed: boolean;
}

interface Listener {
  readonly host: string;
  port: number;
  /** Set before bind on every worker's fd (IP_TRANSPARENT for an intercept listener under TPROXY). */
  readonly socketOptions: SocketOptions | undefined;
  readonly group: ReuseportGroup | undefined;
  readonly slots: (Slot | undefined)[];
}

export class ListenerFds {
  readonly #workers: number;
  readonly #backlog: number;
  readonly #logger: Logger;
  readonly #listeners = new Map<string, Listener>();
  #steering: 'program' | 'kernel-hash' | undefined;

  constructor(workers: number, backlog: number, logger: Logger) {
    this.#workers = workers;
    this.#backlog = backlog;
    this.#logger = logger;
  }

  /** 'program' when the SK_REUSEPORT program steers, 'kernel-hash' without it. */
  get steering(): string {
    return this.#steering ?? 'none yet';
  }

  keys(): string[] {
    return [...this.#listeners.keys()];
  }

  /** Worker `index`'s listening fd for `key`, made now if needed. Rejects with an FdRequestError. */
  async fdFor(index: number, key: string, endpoint: Endpoint, socketOptions?: SocketOptions): Promise<number> {
    let listener = this.#listeners.get(key);
    if (listener === undefined) {
      const host = await resolveHost(endpoint.host);
      // Another worker may have asked for the same key while the name resolved.
      listener = this.#listeners.get(key) ?? this.#add(key, host, endpoint.port, socketOptions);
    }
    const slot = listener.slots[index];
    if (slot !== undefined && !slot.handed) {
      slot.handed = true;
      return slot.fd;
    }
    const fresh = this.#make(listener, index);
    fresh.handed = true;
    return fresh.fd;
  }

  /** Worker `index` closed its listener for `key` (Node closed the fd). */
  closed(index: number, key: string): void {
    const listener = this.#listeners.get(key);
    if (listener === undefined) return;
    listener.slots[index] = undefined;
    this.#forgetIfEmpty(key, listener);
  }

  /**
   * Worker `index` is gone. Its thread's handles were closed with it; an fd it was handed
   * but never adopted would stay open in the group, so it is closed here, checked by its
   * cookie (the number may already belong to another socket).
   */
  workerGone(index: number): void {
    // The listeners stay known, with their ports, even if this was their last fd (one
    // worker): the replacement asks for the same keys and must get the same ports.
    for (const listener of this.#listeners.values()) {
      const slot = listener.slots[index];
      listener.slots[index] = undefined;
      if (slot !== undefined) closeIfSame(slot);
    }
  }

  /** Closes what no worker adopted, and the steering maps (attached programs live on with their listeners). */
  closeAll(): void {
    for (const listener of this.#listeners.values()) {
      for (const slot of listener.slots) if (slot !== undefined && !slot.handed) closeIfSame(slot);
      listener.group?.close();
    }
    this.#listeners.clear();
  }

  #add(key: string, host: string, port: number, socketOptions: SocketOptions | undefined): Listener {
    const listener: Listener = { host, port, socketOptions, group: this.#group(), slots: Array<Slot | undefined>(this.#workers).fill(undefined) };
    this.#listeners.set(key, listener);
    return listener;
  }

  #group(): ReuseportGroup | undefined {
    if (this.#workers === 1 || this.#steering === 'kernel-hash') return undefined;
    try {
      const group = new ReuseportGroup(this.#workers);
      this.#steering = 'program';
      return group;
    } catch (err) {
      this.#steering = 'kernel-hash';
      this.#logger.warn({ event: 'steering', code: errorCode(err) },
        `the SK_REUSEPORT steering program could not be loaded (${err instanceof Error ? err.message.split('\n')[0] : String(err)}): `
        + 'the kernel\'s reuseport hash spreads connections over the workers instead (needs CAP_BPF or root)');
      return undefined;
    }
  }

  #make(listener: Listener, index: number): Slot {
    let fd: number;
    try {
      fd = createListenerFd({
        ...listener.socketOptions,
        // One worker needs no port sharing, and without SO_REUSEPORT a second relay on the
        // same port still fails with EADDRINUSE (a replacement binds after its predecessor closed).
        host: listener.host, port: listener.port, reusePort: this.#workers > 1, backlog: this.#backlog,
        // Node listens dual-stack on '::'; so does a worker's fd.
        ...(listener.host === '::' ? { v6Only: false } : {}),
      });
    } catch (err) {
      throw new FdRequestError(wireListenError(err));
    }
    try {
      if (listener.port === 0) listener.port = boundPort(fd);
      listener.group?.addListener(index, fd);
    } catch (err) {
      close(fd);
      throw new FdRequestError(wireListenError(err));
    }
    const slot: Slot = { fd, cookie: socketCookie(fd), handed: false };
    listener.slots[index] = slot;
    return slot;
  }

  #forgetIfEmpty(key: string, listener: Listener): void {
    if (listener.slots.some((s) => s !== undefined)) return;
    listener.group?.close();
    this.#listeners.delete(key);
  }
}

function closeIfSame(slot: Slot): void {
  try {
    if (socketCookie(slot.fd) === slot.cookie) close(slot.fd);
  } catch {
    // EBADF or not a socket: already closed, and the number is not ours to touch.
  }
}

async function resolveHost(host: string): Promise<string> {
  if (isIP(host) !== 0) return host;
  try {
    return (await lookup(host)).address;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new FdRequestError({ code, message: code });
  }
}

/** Why a worker gets no fd, in the form its listen error takes (see listener-set.ts). */
export class FdRequestError extends Error {
  readonly wire: WireError;
  constructor(wire: WireError) {
    super(wire.message);
    this.wire = wire;
  }
}

/** The errno name (EADDRINUSE), as Node's own listen error would give it. */
function wireListenError(err: unknown): WireError {
  if (err instanceof SysCallError && err.errno !== undefined) return { code: errnoName(err.errno), message: errnoName(err.errno) };
  return { code: errorCode(err), message: err instanceof Error ? err.message : String(err) };
}
