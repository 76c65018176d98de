/** The process's open file descriptors, counted when asked (one fd table for every worker thread). */
import { readdirSync } from 'node:fs';

/** Entries of /proc/self/fd, less the one this read opens; 0 where there is no procfs. */
export function openFds(): number {
  try {
    return Math.max(0, readdirSync('/proc/self/fd').length - 1);
  } catch {
    return 0;
  }
}
