import { readFileSync } from 'node:fs';

/**
 * listen(2) silently caps the backlog at net.core.somaxconn (4096 by default since
 * Linux 5.4, 128 before). A warning when --backlog asks for more than the kernel gives.
 */
export function somaxconnWarning(backlog: number, path = '/proc/sys/net/core/somaxconn'): string | undefined {
  let somaxconn: number;
  try {
    somaxconn = Number(readFileSync(path, 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(somaxconn) || backlog <= somaxconn) return undefined;
  return `--backlog ${backlog} exceeds net.core.somaxconn (${somaxconn}): the kernel caps every accept queue at ${somaxconn}; `
    + `raise it (sysctl -w net.core.somaxconn=${backlog}) for the backlog to take effect`;
}
