/**
 * The system tools the lab needs, and a clear error when one is missing. They are
 * installed by scripts/setup.sh; the Debian package of each is named in the error.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { LabNotRootError, LabToolMissingError } from '../errors.js';

export const TOOL_PACKAGES = {
  ip: 'iproute2',
  sysctl: 'procps',
  ping: 'iputils-ping',
  curl: 'curl',
  iperf3: 'iperf3',
  nginx: 'nginx-light',
  sshd: 'openssh-server',
  ssh: 'openssh-client',
  scp: 'openssh-client',
  'ssh-keygen': 'openssh-client',
  nft: 'nftables',
} as const;

export type Tool = keyof typeof TOOL_PACKAGES;

/** Tools the lab itself needs to exist. */
export const CORE_TOOLS: readonly Tool[] = ['ip', 'sysctl'];
/** The real parts run in the lab (`lab up` checks these too). */
export const PART_TOOLS: readonly Tool[] = ['ping', 'curl', 'iperf3', 'nginx'];

export function findTool(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

export function isTool(name: string): name is Tool {
  return Object.hasOwn(TOOL_PACKAGES, name);
}

/** Throws LabToolMissingError naming every missing tool and its Debian package. */
export function requireTools(tools: readonly Tool[]): void {
  const missing = tools.filter((t) => findTool(t) === undefined);
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((t) => TOOL_PACKAGES[t]))];
    throw new LabToolMissingError(
      `missing ${missing.join(', ')}: run 'bash scripts/setup.sh' as root (or apt-get install ${pkgs.join(' ')})`);
  }
}

export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new LabNotRootError('the lab creates network namespaces and TUN devices: run it as root');
  }
}
