/**
 * A socket's kernel drop count (sk_drops), through getsockopt(SO_MEMINFO): for a netlink
 * socket, the messages the kernel could not queue because the receive buffer was full.
 * With NETLINK_NO_ENOBUFS set, recv() never reports those drops with ENOBUFS, so this
 * count is the only sign of them. (include/uapi/linux/sock_diag.h: SO_MEMINFO fills an
 * array of u32 indexed by SK_MEMINFO_*.)
 */
import { sysCallError } from './errno.js';
import { lastErrno, libcFunction } from './libc.js';
import { SOCKET_CALL, SOL_SOCKET } from './socket-calls.js';

const SO_MEMINFO = 55;
const SK_MEMINFO_DROPS = 8;
const SK_MEMINFO_VARS = 9;

/** Reads one socket's drop count, reusing its buffers (no allocation per read). */
export class SocketDrops {
  readonly #fd: number;
  readonly #buf = Buffer.alloc(4 * SK_MEMINFO_VARS);
  readonly #len: [number] = [0];

  constructor(fd: number) {
    this.#fd = fd;
  }

  read(): number {
    this.#len[0] = this.#buf.length;
    if ((libcFunction(SOCKET_CALL.getsockopt)(this.#fd, SOL_SOCKET, SO_MEMINFO, this.#buf, this.#len) as number) < 0) {
      throw sysCallError(`getsockopt(fd ${this.#fd}, SO_MEMINFO)`, lastErrno());
    }
    return this.#len[0] >= 4 * (SK_MEMINFO_DROPS + 1) ? this.#buf.readUInt32LE(4 * SK_MEMINFO_DROPS) : 0;
  }
}
