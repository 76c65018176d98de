/**
 * Building and removing the lab's namespaces, TUN devices, addresses and routes
 * (the plan is in address-plan.ts).
 *
 * Each TUN device is created in the root namespace under a unique prefixed name
 * (`<prefix><link index><a|b>`, e.g. tsl2a), moved into its node's namespace and
 * renamed there after the neighbour (in rc: `client` and `rs`). Its fd, held by the
 * emulator, keeps working across the move. Because the devices are not persistent,
 * they disappear when the fds close, even if the owner crashes.
 */
import { closeTun, openTun, type TunDevice } from '../sys/index.js';
import { LabError, SysCallError } from '../errors.js';

const EBUSY = 16;
import { LINK_NAMES, LINK_PLAN, LINK_PLAN6, LAB_NODES, ROUTERS, ROUTES, ROUTES6, type LabNode, type LinkName } from './address-plan.js';
import { runChecked } from './command.js';
import { addNamespace, deleteNamespace, killProcessesIn, namespaceExists } from './netns.js';

/** Packets the kernel may queue on a TUN device for the emulator to read. */
export const TUN_TXQUEUELEN = 10_000;
export const LAB_MTU = 1500;

export type LinkDevices = Readonly<Record<LinkName, { readonly a: TunDevice; readonly b: TunDevice }>>;

export function namespaceName(prefix: string, node: LabNode): string {
  return `${prefix}-${node}`;
}

export function rootDeviceName(prefix: string, link: LinkName, end: 'a' | 'b'): string {
  return `${prefix}${LINK_NAMES.indexOf(link)}${end}`;
}

async function ipIn(ns: string, args: readonly string[]): Promise<void> {
  await runChecked('ip', ['-n', ns, ...args]);
}

export interface TopologyOptions {
  /** Also the IPv6 plan (LINK_PLAN6, ROUTES6); off by default. */
  readonly ipv6?: boolean;
}

async function prepareNamespace(prefix: string, node: LabNode, ipv6: boolean): Promise<void> {
  const ns = namespaceName(prefix, node);
  await addNamespace(ns);
  await ipIn(ns, ['link', 'set', 'lo', 'up']);
  const router = ROUTERS.includes(node) ? 1 : 0;
  await runChecked('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w',
    `net.ipv4.ip_forward=${router}`,
    'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0',
    // IPv6 off by default: no router solicitations or DAD packets on the emulated links.
    // On (ipv6: true), as quiet as it gets: no link-local addresses (addr_gen_mode 1),
    // no DAD, no router solicitations or advertisements; only the plan's addresses.
    ...(ipv6 ? [
      'net.ipv6.conf.all.disable_ipv6=0', 'net.ipv6.conf.default.disable_ipv6=0',
      'net.ipv6.conf.default.addr_gen_mode=1', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.default.dad_transmits=0',
      'net.ipv6.conf.default.router_solicitations=0', 'net.ipv6.conf.default.accept_ra=0',
      `net.ipv6.conf.all.forwarding=${router}`, `net.ipv6.conf.default.forwarding=${router}`,
    ] : ['net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'])]);
}

/** Creates everything; on failure closes what it opened and rethrows (then call teardown). */
export async function buildTopology(prefix: string, options: TopologyOptions = {}): Promise<LinkDevices> {
  const ipv6 = options.ipv6 === true;
  for (const node of LAB_NODES) await prepareNamespace(prefix, node, ipv6);
  const opened: TunDevice[] = [];
  try {
    const devices: Partial<Record<LinkName, { a: TunDevice; b: TunDevice }>> = {};
    for (const link of LINK_NAMES) {
      const plan = LINK_PLAN[link];
      const a = openOurTun(rootDeviceName(prefix, link, 'a'));
      opened.push(a);
      const b = openOurTun(rootDeviceName(prefix, link, 'b'));
      opened.push(b);
      const pair = { a, b };
      for (const end of ['a', 'b'] as const) {
        const { node, device, address } = plan[end];
        const ns = namespaceName(prefix, node);
        await runChecked('ip', ['link', 'set', pair[end].name, 'netns', ns]);
        await ipIn(ns, ['link', 'set', pair[end].name, 'name', device]);
        await ipIn(ns, ['link', 'set', device, 'mtu', String(LAB_MTU), 'txqueuelen', String(TUN_TXQUEUELEN), 'up']);
        await ipIn(ns, ['addr', 'add', `${address}/${plan.prefixLength}`, 'dev', device]);
        if (ipv6) await ipIn(ns, ['-6', 'addr', 'add', `${LINK_PLAN6[link][end]}/64`, 'dev', device, 'nodad']);
      }
      devices[link] = pair;
    }
    for (const [node, subnet, via] of ROUTES) {
      await ipIn(namespaceName(prefix, node), ['route', 'add', subnet, 'via', via]);
    }
    if (ipv6) {
      for (const [node, subnet, via] of ROUTES6) await ipIn(namespaceName(prefix, node), ['-6', 'route', 'add', subnet, 'via', via]);
    }
    return devices as LinkDevices;
  } catch (err) {
    for (const d of opened) closeTun(d);
    throw err;
  }
}

/**
 * A new, non-persistent TUN device. IFF_TUN_EXCL makes an existing device of that name
 * an error instead of a device we would take over, and later delete, as ours.
 */
function openOurTun(name: string): TunDevice {
  try {
    return openTun(name);
  } catch (err) {
    if (err instanceof SysCallError && err.errno === EBUSY) {
      throw new LabError(`a network device named ${name} already exists and is not this lab's; tcpsplit lab will not take it over (use another --prefix, or remove the device)`, { cause: err });
    }
    throw err;
  }
}

/**
 * Removes the lab's namespaces (after ending the processes inside them). Touches nothing
 * without the prefix. The lab's TUN devices are not persistent: each disappears when
 * the last fd on it closes (the emulator's exit) or its namespace is deleted, so no
 * device is ever deleted by name, which could hit a device that is not ours.
 */
export async function teardownTopology(prefix: string): Promise<void> {
  for (const node of LAB_NODES) {
    const ns = namespaceName(prefix, node);
    if (!namespaceExists(ns)) continue;
    await killProcessesIn(ns);
    await deleteNamespace(ns);
  }
}

/** Whether any namespace of this lab exists. */
export function topologyExists(prefix: string): boolean {
  return LAB_NODES.some((node) => namespaceExists(namespaceName(prefix, node)));
}
