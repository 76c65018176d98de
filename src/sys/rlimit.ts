/**
 * The open-files limit (RLIMIT_NOFILE) and how many descriptors are open now. The relay
 * sizes --max-connections by them: past the limit, accept() fails with EMFILE and libuv
 * quietly accepts and closes the waiting connections (a clean FIN the relay never sees).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { libcFunction, lastErrno } from './libc.js';
import { sysCallError } from './errno.js';

const RLIMIT_NOFILE = 7;
const RLIM_INFINITY = 0xffff_ffff_ffff_ffffn;

const PROTO = {
  getrlimit: 'int getrlimit(int resource, _Out_ void *rlim)',
  setrlimit: 'int setrlimit(int resource, const void *rlim)',
} as const;

export interface OpenFilesLimit {
  /** The limit in force (Infinity for RLIM_INFINITY). */
  readonly soft: number;
  /** What an unprivileged process may raise `soft` to. */
  readonly hard: number;
}

function toNumber(v: bigint): number {
  return v === RLIM_INFINITY ? Infinity : Number(v);
}

/** getrlimit(RLIMIT_NOFILE). Throws SysCallError, or FfiUnavailableError without koffi. */
export function getOpenFilesLimit(): OpenFilesLimit {
  const rlim = Buffer.alloc(16); // struct rlimit { rlim_t rlim_cur; rlim_t rlim_max; } (64-bit)
  if ((libcFunction(PROTO.getrlimit)(RLIMIT_NOFILE, rlim) as number) < 0) {
    throw sysCallError('getrlimit(RLIMIT_NOFILE)', lastErrno());
  }
  return { soft: toNumber(rlim.readBigUInt64LE(0)), hard: toNumber(rlim.readBigUInt64LE(8)) };
}

/** setrlimit(RLIMIT_NOFILE); raising `hard` needs CAP_SYS_RESOURCE. */
export function setOpenFilesLimit(limit: OpenFilesLimit): void {
  const rlim = Buffer.alloc(16);
  rlim.writeBigUInt64LE(limit.soft === Infinity ? RLIM_INFINITY : BigInt(limit.soft), 0);
  rlim.writeBigUInt64LE(limit.hard === Infinity ? RLIM_INFINITY : BigInt(limit.hard), 8);
  if ((libcFunction(PROTO.setrlimit)(RLIMIT_NOFILE, rlim) as number) < 0) {
    throw sysCallError(`setrlimit(RLIMIT_NOFILE, ${limit.soft}:${limit.hard})`, lastErrno());
  }
}

/**
 * Raises the soft open-files limit to the hard limit (Node does this at start-up too, but
 * an embedder may not) and returns the limit now in force with the soft limit before.
 * Without FFI the limit is read from /proc/self/limits and left as it is.
 */
export function raiseOpenFilesLimit(): OpenFilesLimit & { readonly before: number; readonly ffi: boolean } {
  let limit: OpenFilesLimit;
  try {
    limit = getOpenFilesLimit();
  } catch {
    return { ...procOpenFilesLimit(), before: procOpenFilesLimit().soft, ffi: false };
  }
  const before = limit.soft;
  if (limit.soft < limit.hard) {
    try {
      setOpenFilesLimit({ soft: limit.hard, hard: limit.hard });
    } catch {
      // Keep the soft limit; the caller sizes its connection limit by what is in force.
    }
    limit = getOpenFilesLimit();
  }
  return { ...limit, before, ffi: true };
}

/** The limit as /proc/self/limits shows it ("Max open files  1024  4096  files"). */
export function procOpenFilesLimit(): OpenFilesLimit {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
  const [soft, hard] = (line ?? '').slice('Max open files'.length).trim().split(/\s+/);
  const parse = (v: string | undefined): number => (v === 'unlimited' ? Infinity : Number(v));
  return { soft: parse(soft), hard: parse(hard) };
}

/** Descriptors this process has open now (the entries of /proc/self/fd, less readdir's own). */
export function openFdCount(): number {
  return readdirSync('/proc/self/fd').length - 1;
}
