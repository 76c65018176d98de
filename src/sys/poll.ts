/**
 * ppoll(2) over a fixed set of fds with a nanosecond timeout. The pollfd array and the
 * timespec are allocated once, and wait() allocates nothing (an emulator thread that
 * allocates collects garbage, and each collection delays its packets).
 */
import { libcFunction, lastErrno } from './libc.js';
import { EINTR, sysCallError } from './errno.js';

export const POLLIN = 0x001;
export const POLLOUT = 0x004;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;

const PPOLL = 'int ppoll(void *fds, unsigned long nfds, void *timeout, void *sigmask)';
const POLLFD_BYTES = 8; // struct pollfd { int fd; short events; short revents; }

export class PollSet {
  readonly #fds: Buffer;
  readonly #count: number;
  readonly #timespec = Buffer.alloc(16); // struct timespec { int64 tv_sec; int64 tv_nsec; }

  constructor(entries: readonly { fd: number; events: number }[]) {
    this.#count = entries.length;
    this.#fds = Buffer.alloc(POLLFD_BYTES * entries.length);
    entries.forEach((e, i) => {
      this.#fds.writeInt32LE(e.fd, i * POLLFD_BYTES);
      this.#fds.writeInt16LE(e.events, i * POLLFD_BYTES + 4);
    });
  }

  /**
   * Waits until an fd is ready or `timeoutNs` passes (negative: forever).
   * Returns the number of ready fds (0 on timeout or signal).
   */
  wait(timeoutNs: number): number {
    let timeout: Buffer | null = null;
    if (timeoutNs >= 0) {
      const ns = Math.floor(timeoutNs);
      const sec = Math.floor(ns / 1e9);
      // Two 32-bit halves per int64 field: BigInt() would allocate on every call, and
      // this runs tens of thousands of times a second in each emulator thread.
      this.#timespec.writeUInt32LE(sec % 2 ** 32, 0);
      this.#timespec.writeUInt32LE(Math.floor(sec / 2 ** 32), 4);
      this.#timespec.writeUInt32LE(ns - sec * 1e9, 8);
      this.#timespec.writeUInt32LE(0, 12);
      timeout = this.#timespec;
    }
    const r = libcFunction(PPOLL)(this.#fds, this.#count, timeout, null) as number;
    if (r >= 0) return r;
    const errno = lastErrno();
    if (errno === EINTR) return 0;
    throw sysCallError('ppoll', errno);
  }

  /** revents of entry `index` after the last wait(). */
  revents(index: number): number {
    return this.#fds.readInt16LE(index * POLLFD_BYTES + 6);
  }
}
