/**
 * The lab's TCP congestion control, as the paper's hosts ran it (Ubuntu 16.04/17.04:
 * CUBIC, initial window 10). This kernel's default is BBR, and a child namespace cannot
 * change net.ipv4.tcp_congestion_control, but a route's `congctl` metric can: every
 * connection through that route, opened or accepted (the kernel reads RTAX_CC_ALGO
 * for both), uses it. So each route of each lab host gets `congctl ALG`.
 */
import { LabError } from '../errors.js';
import { LAB_NODES, type Lab } from '../lab/index.js';

export const CONGESTION_CONTROLS = ['cubic', 'bbr'] as const;
export type CongestionControl = (typeof CONGESTION_CONTROLS)[number];

interface RouteJson {
  readonly dst?: string;
  readonly gateway?: string;
  readonly dev?: string;
  readonly protocol?: string;
  readonly scope?: string;
  readonly prefsrc?: string;
}

async function ipChecked(lab: Lab, node: (typeof LAB_NODES)[number], args: string[]): Promise<string> {
  const r = await lab.exec(node, 'ip', args);
  if (r.code !== 0) throw new LabError(`ip ${args.join(' ')} in ${node} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Sets `congctl cc` on every IPv4 route of every lab host, and checks that each took it. */
export async function setLabCongestionControl(lab: Lab, cc: CongestionControl): Promise<void> {
  for (const node of LAB_NODES) {
    const routes = JSON.parse(await ipChecked(lab, node, ['-j', '-4', 'route', 'show'])) as RouteJson[];
    for (const r of routes) {
      if (r.dst === undefined || r.dev === undefined) continue;
      const args = ['-4', 'route', 'replace', r.dst];
      if (r.gateway !== undefined) args.push('via', r.gateway);
      args.push('dev', r.dev);
      if (r.protocol !== undefined) args.push('proto', r.protocol);
      if (r.scope !== undefined) args.push('scope', r.scope);
      if (r.prefsrc !== undefined) args.push('src', r.prefsrc);
      args.push('congctl', cc);
      await ipChecked(lab, node, args);
    }
    const shown = (await ipChecked(lab, node, ['-4', 'route', 'show'])).trim().split('\n').filter((l) => l !== '');
    const without = shown.filter((l) => !l.includes(`congctl ${cc}`));
    if (shown.length === 0 || without.length > 0) {
      throw new LabError(`congestion control ${cc} did not take on ${node}'s routes: ${without.join('; ') || '(no routes)'}`);
    }
  }
}
