/**
 * errno numbers to names, and the one helper that turns a failed call into a
 * SysCallError ("ioctl(TUNSETIFF tsl1a): EPERM (errno 1)").
 */
import { SysCallError } from '../errors.js';
import { koffiModule } from './libc.js';

let names: Map<number, string> | undefined;

/** 'EAGAIN' for 11, 'errno 4242' for a number libc does not name. */
export function errnoName(errno: number): string {
  if (names === undefined) {
    names = new Map();
    for (const [name, value] of Object.entries(koffiModule().os.errno)) {
      // EAGAIN and EWOULDBLOCK share a number; keep the first, conventional name.
      if (!names.has(value)) names.set(value, name);
    }
  }
  return names.get(errno) ?? `errno ${errno}`;
}

export const EAGAIN = 11;
export const EINTR = 4;
export const EPERM = 1;

/** A SysCallError for `call` (e.g. "ioctl(TUNSETIFF)") that failed with `errno`. */
export function sysCallError(call: string, errno: number): InstanceType<typeof SysCallError> {
  return new SysCallError(`${call}: ${errnoName(errno)} (errno ${errno})`, { syscall: call, errno });
}
