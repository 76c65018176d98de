/**
 * The libc binding: the one place in tcpsplit that loads koffi.
 *
 * koffi and libc.so.6 are loaded lazily, once per thread (each worker_thread has its
 * own isolate, so each loads its own copy; koffi supports that). Functions are bound
 * from C-like prototypes and cached by prototype, so adding a call is one line:
 *
 *   const setsockopt = libcFunction('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)');
 *
 * Callers never see koffi: the typed wrappers in this folder turn a -1 return into a
 * SysCallError that names the call and the errno (see errno.ts).
 */
import { createRequire } from 'node:module';
import type * as Koffi from 'koffi';
import { FfiUnavailableError } from '../errors.js';

type KoffiModule = typeof Koffi;
type LibraryHandle = ReturnType<KoffiModule['load']>;
// koffi types native functions as (...args: any[]) => any; we narrow at each wrapper.
export type NativeFunction = (...args: unknown[]) => unknown;

interface Loaded {
  readonly koffi: KoffiModule;
  readonly lib: LibraryHandle;
  readonly functions: Map<string, NativeFunction>;
}

let loaded: Loaded | undefined;

function load(): Loaded {
  if (loaded !== undefined) return loaded;
  const require = createRequire(import.meta.url);
  let koffi: KoffiModule;
  try {
    koffi = require('koffi') as KoffiModule;
  } catch (err) {
    throw new FfiUnavailableError(
      `cannot load the koffi FFI package (is it installed? run 'npm ci'): ${String(err)}`, { cause: err });
  }
  let lib: LibraryHandle;
  try {
    lib = koffi.load('libc.so.6');
  } catch (err) {
    throw new FfiUnavailableError(`cannot load libc.so.6 through koffi: ${String(err)}`, { cause: err });
  }
  loaded = { koffi, lib, functions: new Map() };
  return loaded;
}

/** The koffi module itself, for the few helpers in src/sys that need its type system. */
export function koffiModule(): KoffiModule {
  return load().koffi;
}

/** A libc function bound from a C-like prototype; bound once per thread and cached. */
export function libcFunction(prototype: string): NativeFunction {
  const l = load();
  let fn = l.functions.get(prototype);
  if (fn === undefined) {
    try {
      fn = l.lib.func(prototype) as NativeFunction;
    } catch (err) {
      throw new FfiUnavailableError(`cannot bind libc function '${prototype}': ${String(err)}`, { cause: err });
    }
    l.functions.set(prototype, fn);
  }
  return fn;
}

/** errno as libc left it after the last native call on this thread. */
export function lastErrno(): number {
  return load().koffi.errno();
}

/** Whether koffi and libc can be loaded here (for diagnostics and `lab up` preflight). */
export function libcAvailable(): boolean {
  try {
    load();
    return true;
  } catch {
    return false;
  }
}
