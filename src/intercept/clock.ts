/**
 * CLOCK_MONOTONIC in milliseconds, with sub-millisecond precision: the same clock on every
 * thread of the process (process.hrtime), so a SYN's capture time, taken on the capture
 * thread, compares with a claim's time taken on the worker's (the pairing table's
 * late-event rule). Allocates a BigInt: for per-SYN and per-accept use, not hot loops
 * (src/sys/clock.ts has the allocation-free one).
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
