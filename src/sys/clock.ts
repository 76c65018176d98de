/**
 * An allocation-free monotonic clock for the emulator threads. On Node 20,
 * performance.now() allocates 16 bytes per call (measured in a worker, 300 000 calls),
 * and process.hrtime.bigint() 56; an emulator thread calls its clock several times per
 * loop, so either makes it collect garbage every second or two, and each collection
 * delays the packets due meanwhile. clock_gettime(CLOCK_MONOTONIC) into a preallocated
 * timespec, read with sample() into a preallocated Float64Array, allocates nothing.
 */
import { libcFunction, lastErrno } from './libc.js';
import { sysCallError } from './errno.js';

const CLOCK_MONOTONIC = 1;

export class MonotonicClock {
  readonly #timespec = Buffer.allocUnsafeSlow(16); // struct timespec { int64 tv_sec; int64 tv_nsec; }
  readonly #words = new Int32Array(this.#timespec.buffer, this.#timespec.byteOffset, 4);
  readonly #call = libcFunction('int clock_gettime(int clock, void *ts)');

  /**
   * sample() stores the time here, in milliseconds on CLOCK_MONOTONIC (the same clock as
   * ppoll's timeout), with sub-microsecond resolution. A store, not a return value: a
   * function that V8 does not inline returns a double boxed in a fresh heap number.
   */
  readonly ms = new Float64Array(1);

  sample(): void {
    if ((this.#call(CLOCK_MONOTONIC, this.#timespec) as number) < 0) throw sysCallError('clock_gettime', lastErrno());
    const w = this.#words;
    const sec = ((w[0] ?? 0) >>> 0) + (w[1] ?? 0) * 4294967296;
    this.ms[0] = sec * 1000 + (w[2] ?? 0) / 1e6;
  }

  /** sample(), returned (allocates a heap number when not inlined: not for hot loops). */
  nowMs(): number {
    this.sample();
    return this.ms[0] ?? 0;
  }
}

/**
 * CLOCK_MONOTONIC in whole microseconds, exact (a BigInt, not a rounded double): the
 * clock and unit of sd_notify's MONOTONIC_USEC, which systemd compares with its own.
 */
export function monotonicMicroseconds(): bigint {
  const timespec = Buffer.alloc(16);
  if ((libcFunction('int clock_gettime(int clock, void *ts)')(CLOCK_MONOTONIC, timespec) as number) < 0) {
    throw sysCallError('clock_gettime(CLOCK_MONOTONIC)', lastErrno());
  }
  return timespec.readBigInt64LE(0) * 1_000_000n + timespec.readBigInt64LE(8) / 1000n;
}
