/**
 * sd_notify(3) without libsystemd: the service manager's readiness protocol is one
 * datagram of newline-separated KEY=VALUE lines to the AF_UNIX socket named by
 * $NOTIFY_SOCKET (a path, or '@name' for the abstract namespace, where '@' stands for the
 * leading NUL byte). Node has no AF_UNIX datagram sockets, hence koffi.
 *
 * The sending socket is non-blocking: a service manager that does not read must never
 * stall the relay (a full receive queue is EAGAIN, reported like any other failure).
 *
 * NotifyReceiver is the other end, for tests (and anyone who wants to see what the relay
 * tells its manager without systemd): it binds a datagram socket and reads messages
 * without blocking.
 */
import { unlinkSync } from 'node:fs';
import { SdNotifyError } from '../errors.js';
import { EAGAIN, sysCallError } from './errno.js';
import { close } from './fd.js';
import { lastErrno, libcFunction } from './libc.js';
import { AF_UNIX, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK, SOCKET_CALL as PROTO } from './socket-calls.js';

const MSG_NOSIGNAL = 0x4000;
const MSG_DONTWAIT = 0x40;
/** struct sockaddr_un { sa_family_t sun_family; char sun_path[108]; } */
const SUN_PATH_OFFSET = 2;
const SUN_PATH_BYTES = 108;
/** systemd reads at most this much of one notification (PIPE_BUF-ish); ours are tens of bytes. */
const MAX_MESSAGE_BYTES = 4096;


/**
 * The sockaddr_un for a $NOTIFY_SOCKET value, cut to its real length: an abstract name's
 * length is part of the name (no terminating NUL), a path's includes its NUL.
 * Throws SdNotifyError for anything else (a relative path, an empty or too long name).
 */
export function notifySocketAddress(socket: string): Buffer {
  const abstract = socket.startsWith('@');
  if (!abstract && !socket.startsWith('/')) {
    throw new SdNotifyError(`NOTIFY_SOCKET '${socket}' is neither an absolute path nor an abstract name ('@name')`);
  }
  const name = Buffer.from(abstract ? socket.slice(1) : socket, 'utf8');
  const length = abstract ? 1 + name.length : name.length + 1;
  if (name.length === 0 || length > SUN_PATH_BYTES) {
    throw new SdNotifyError(`NOTIFY_SOCKET '${socket}' does not fit a unix socket address (1 to ${SUN_PATH_BYTES - 1} bytes)`);
  }
  const addr = Buffer.alloc(SUN_PATH_OFFSET + length); // zero-filled: the abstract NUL and the path's NUL
  addr.writeUInt16LE(AF_UNIX, 0);
  name.copy(addr, SUN_PATH_OFFSET + (abstract ? 1 : 0));
  return addr;
}

function datagramSocket(what: string): number {
  const fd = libcFunction(PROTO.socket)(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) throw sysCallError(`socket(AF_UNIX, SOCK_DGRAM) for ${what}`, lastErrno());
  return fd;
}

/**
 * Sends `message` (e.g. "READY=1") to the manager's socket. Throws SdNotifyError for a
 * bad address, SysCallError when a call fails (ECONNREFUSED: nobody bound there; EAGAIN:
 * its queue is full), FfiUnavailableError without koffi. Callers that must not fail use
 * ServiceNotifier (src/observe/service-notifier.ts).
 */
export function sendNotify(socket: string, message: string): void {
  const addr = notifySocketAddress(socket);
  const data = Buffer.from(message, 'utf8');
  const fd = datagramSocket('sd_notify');
  try {
    const sent = libcFunction(PROTO.sendto)(fd, data, data.length, MSG_NOSIGNAL, addr, addr.length) as number;
    if (sent < 0) throw sysCallError(`sendto(${socket})`, lastErrno());
  } finally {
    close(fd);
  }
}

/** A bound AF_UNIX datagram socket that reads notifications; close() removes a path it made. */
export class NotifyReceiver {
  readonly socket: string;
  readonly #fd: number;
  readonly #buffer = Buffer.alloc(MAX_MESSAGE_BYTES);
  #closed = false;

  private constructor(socket: string, fd: number) {
    this.socket = socket;
    this.#fd = fd;
  }

  /** Binds `socket` (a path that must not exist yet, or '@name'). */
  static bind(socket: string): NotifyReceiver {
    const addr = notifySocketAddress(socket);
    const fd = datagramSocket('a notify receiver');
    if ((libcFunction(PROTO.bind)(fd, addr, addr.length) as number) < 0) {
      const errno = lastErrno();
      close(fd);
      throw sysCallError(`bind(${socket})`, errno);
    }
    return new NotifyReceiver(socket, fd);
  }

  /** The next message waiting, or undefined when none is. */
  receive(): string | undefined {
    if (this.#closed) throw new SdNotifyError(`notify receiver ${this.socket} is closed`);
    const n = libcFunction(PROTO.recv)(this.#fd, this.#buffer, this.#buffer.length, MSG_DONTWAIT) as number;
    if (n >= 0) return this.#buffer.toString('utf8', 0, n);
    const errno = lastErrno();
    if (errno === EAGAIN) return undefined;
    throw sysCallError(`recv(${this.socket})`, errno);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    close(this.#fd);
    if (!this.socket.startsWith('@')) {
      try { unlinkSync(this.socket); } catch { /* already gone */ }
    }
  }
}
