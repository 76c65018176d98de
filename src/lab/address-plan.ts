/**
 * The lab's fixed topology and address plan (all in 198.18.0.0/15, RFC 2544's
 * benchmarking block, and all inside the lab's namespaces).
 *
 *   client ==(client-rc)== rc ==(rc-rs)== rs ==(rs-server)== server
 *      \\______________________(internet)______________________/
 *
 * Each link is a pair of TUN devices joined by the link emulator. "up" is the
 * direction away from the client (a -> b), "down" towards it.
 * rc and rs forward (ip_forward=1): the client's path address reaches the server's path
 * address through rc and rs, and back. The internet link joins the client's and the
 * server's internet addresses directly, for the end-to-end baseline.
 */

export const LAB_NODES = ['client', 'rc', 'rs', 'server'] as const;
export type LabNode = (typeof LAB_NODES)[number];

export const LINK_NAMES = ['client-rc', 'rc-rs', 'rs-server', 'internet'] as const;
export type LinkName = (typeof LINK_NAMES)[number];

export interface LinkEnd {
  readonly node: LabNode;
  /** Interface name inside the node's namespace. */
  readonly device: string;
  readonly address: string;
}

export interface LinkPlan {
  readonly subnet: string;
  readonly prefixLength: number;
  /** The end nearer the client; "up" traffic flows a -> b. */
  readonly a: LinkEnd;
  readonly b: LinkEnd;
}

export const LINK_PLAN: Readonly<Record<LinkName, LinkPlan>> = {
  'client-rc': {
    subnet: '198.18.1.0', prefixLength: 24,
    a: { node: 'client', device: 'rc', address: '198.18.1.1' },
    b: { node: 'rc', device: 'client', address: '198.18.1.2' },
  },
  'rc-rs': {
    subnet: '198.18.2.0', prefixLength: 24,
    a: { node: 'rc', device: 'rs', address: '198.18.2.1' },
    b: { node: 'rs', device: 'rc', address: '198.18.2.2' },
  },
  'rs-server': {
    subnet: '198.18.3.0', prefixLength: 24,
    a: { node: 'rs', device: 'server', address: '198.18.3.1' },
    b: { node: 'server', device: 'rs', address: '198.18.3.2' },
  },
  internet: {
    subnet: '198.18.4.0', prefixLength: 24,
    a: { node: 'client', device: 'internet', address: '198.18.4.1' },
    b: { node: 'server', device: 'internet', address: '198.18.4.2' },
  },
};

/**
 * Every address by node and side. The client's and server's "path" side is the one
 * routed through rc and rs; rc and rs name their sides by the neighbour.
 */
export const ADDRESS_PLAN = {
  client: { path: '198.18.1.1', internet: '198.18.4.1' },
  rc: { client: '198.18.1.2', rs: '198.18.2.1' },
  rs: { rc: '198.18.2.2', server: '198.18.3.1' },
  server: { path: '198.18.3.2', internet: '198.18.4.2' },
} as const;

export type AddressSide<N extends LabNode> = keyof (typeof ADDRESS_PLAN)[N];

/** Static routes beyond the connected subnets: [node, destination subnet, via]. */
export const ROUTES: readonly (readonly [LabNode, string, string])[] = [
  ['client', '198.18.2.0/24', '198.18.1.2'],
  ['client', '198.18.3.0/24', '198.18.1.2'],
  ['rc', '198.18.3.0/24', '198.18.2.2'],
  ['rs', '198.18.1.0/24', '198.18.2.1'],
  ['server', '198.18.1.0/24', '198.18.3.1'],
  ['server', '198.18.2.0/24', '198.18.3.1'],
];

/** Nodes that forward packets (the paper's Pathway routers). */
export const ROUTERS: readonly LabNode[] = ['rc', 'rs'];

export function addressOf<N extends LabNode>(node: N, side: AddressSide<N>): string {
  return ADDRESS_PLAN[node][side] as string;
}

/**
 * The IPv6 plan, used when a lab is created with `ipv6: true`: ULA addresses
 * (fd00:7473::/32, "ts"), one /64 per link, ::1 at the end nearer the client and ::2 at
 * the other, mirroring the IPv4 plan (198.18.N.x is fd00:7473:N::x). They exist only
 * inside the lab's namespaces.
 */
export const LINK_PLAN6: Readonly<Record<LinkName, { readonly subnet: string; readonly prefixLength: 64; readonly a: string; readonly b: string }>> = {
  'client-rc': { subnet: 'fd00:7473:1::', prefixLength: 64, a: 'fd00:7473:1::1', b: 'fd00:7473:1::2' },
  'rc-rs': { subnet: 'fd00:7473:2::', prefixLength: 64, a: 'fd00:7473:2::1', b: 'fd00:7473:2::2' },
  'rs-server': { subnet: 'fd00:7473:3::', prefixLength: 64, a: 'fd00:7473:3::1', b: 'fd00:7473:3::2' },
  internet: { subnet: 'fd00:7473:4::', prefixLength: 64, a: 'fd00:7473:4::1', b: 'fd00:7473:4::2' },
};

export const ADDRESS_PLAN6 = {
  client: { path: 'fd00:7473:1::1', internet: 'fd00:7473:4::1' },
  rc: { client: 'fd00:7473:1::2', rs: 'fd00:7473:2::1' },
  rs: { rc: 'fd00:7473:2::2', server: 'fd00:7473:3::1' },
  server: { path: 'fd00:7473:3::2', internet: 'fd00:7473:4::2' },
} as const satisfies Record<LabNode, Record<string, string>>;

/** ROUTES for IPv6: [node, destination /64, via]. */
export const ROUTES6: readonly (readonly [LabNode, string, string])[] = [
  ['client', 'fd00:7473:2::/64', 'fd00:7473:1::2'],
  ['client', 'fd00:7473:3::/64', 'fd00:7473:1::2'],
  ['rc', 'fd00:7473:3::/64', 'fd00:7473:2::2'],
  ['rs', 'fd00:7473:1::/64', 'fd00:7473:2::1'],
  ['server', 'fd00:7473:1::/64', 'fd00:7473:3::1'],
  ['server', 'fd00:7473:2::/64', 'fd00:7473:3::1'],
];

export function address6Of<N extends LabNode>(node: N, side: AddressSide<N>): string {
  return (ADDRESS_PLAN6[node] as Record<string, string>)[side as string] ?? '';
}
