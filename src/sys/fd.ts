/**
 * File-descriptor calls: open, close, read, write, fcntl, ioctl.
 *
 * read/write are on the emulator's hot path (tens of thousands of calls a second per
 * thread), so they allocate nothing: a would-block returns WOULD_BLOCK instead of
 * throwing, and callers pass preallocated Buffers (a Buffer is passed as a pointer to
 * its first byte; use a subarray made once, not per call, for an offset).
 */
import { constants } from 'node:fs';
import { libcFunction, lastErrno } from './libc.js';
import { EAGAIN, EINTR, sysCallError } from './errno.js';

export const O_RDONLY = constants.O_RDONLY;
export const O_WRONLY = constants.O_WRONLY;
export const O_RDWR = constants.O_RDWR;
export const O_NONBLOCK = constants.O_NONBLOCK;
export const O_CLOEXEC = 0o2000000;

export const F_GETFL = 3;
export const F_SETFL = 4;

/** Returned by read/write when a non-blocking fd has nothing to give or take. */
export const WOULD_BLOCK = -1;

const PROTO = {
  open: 'int open(const char *path, int flags, ...)',
  close: 'int close(int fd)',
  read: 'long read(int fd, void *buf, unsigned long count)',
  write: 'long write(int fd, const void *buf, unsigned long count)',
  fcntl: 'int fcntl(int fd, int cmd, ...)',
  ioctl: 'int ioctl(int fd, unsigned long request, ...)',
} as const;

export function open(path: string, flags: number, mode = 0): number {
  const fd = libcFunction(PROTO.open)(path, flags, 'int', mode) as number;
  if (fd < 0) throw sysCallError(`open(${path})`, lastErrno());
  return fd;
}

export function close(fd: number): void {
  // Linux releases the fd even when close reports EINTR, so never retry.
  if ((libcFunction(PROTO.close)(fd) as number) < 0) {
    const errno = lastErrno();
    if (errno !== EINTR) throw sysCallError(`close(${fd})`, errno);
  }
}

/** Bytes read, 0 at end of file, or WOULD_BLOCK. */
export function read(fd: number, buf: Buffer, count = buf.length): number {
  if (count > buf.length) throw new RangeError(`read(fd ${fd}): count ${count} is larger than the buffer (${buf.length})`);
  for (;;) {
    const n = libcFunction(PROTO.read)(fd, buf, count) as number;
    if (n >= 0) return n;
    const errno = lastErrno();
    if (errno === EAGAIN) return WOULD_BLOCK;
    if (errno !== EINTR) throw sysCallError(`read(fd ${fd})`, errno);
  }
}

/** Bytes written, or WOULD_BLOCK. */
export function write(fd: number, buf: Buffer, count = buf.length): number {
  if (count > buf.length) throw new RangeError(`write(fd ${fd}): count ${count} is larger than the buffer (${buf.length})`);
  for (;;) {
    const n = libcFunction(PROTO.write)(fd, buf, count) as number;
    if (n >= 0) return n;
    const errno = lastErrno();
    if (errno === EAGAIN) return WOULD_BLOCK;
    if (errno !== EINTR) throw sysCallError(`write(fd ${fd})`, errno);
  }
}

export function fcntl(fd: number, cmd: number, arg = 0): number {
  const r = libcFunction(PROTO.fcntl)(fd, cmd, 'int', arg) as number;
  if (r < 0) throw sysCallError(`fcntl(fd ${fd}, cmd ${cmd})`, lastErrno());
  return r;
}

export function setNonBlocking(fd: number, on = true): void {
  const flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK);
}

/**
 * ioctl with a pointer argument (the struct the request reads or fills).
 * `what` names the request in errors, e.g. 'TUNSETIFF'.
 */
export function ioctl(fd: number, request: number, arg: Buffer, what: string): number {
  const r = libcFunction(PROTO.ioctl)(fd, request, 'void *', arg) as number;
  if (r < 0) throw sysCallError(`ioctl(${what}, fd ${fd})`, lastErrno());
  return r;
}
