/**
 * The process's effective capabilities, from /proc/self/status (CapEff): enough to say
 * "you need CAP_NET_ADMIN" before trying, instead of failing halfway through a setup.
 */
import { readFileSync } from 'node:fs';

/** linux/capability.h */
export const CAP_NET_BIND_SERVICE = 10;
export const CAP_NET_ADMIN = 12;
export const CAP_BPF = 39;

/**
 * The capabilities `tcpsplit relay` uses, each with what uses it: the one list that
 * deploy/tcpsplit.service grants (test/deploy-unit.test.ts checks that the unit's
 * CapabilityBoundingSet and AmbientCapabilities are exactly these). Without one, the
 * feature that needs it is off with a warning, or --intercept refuses to start.
 *
 * Not needed, checked in the code: CAP_NET_RAW (no raw or packet sockets: NFQUEUE and
 * conntrack events are netlink, IP_TRANSPARENT takes CAP_NET_ADMIN as well);
 * CAP_SYS_RESOURCE (the relay raises its open-files soft limit to the hard limit only;
 * LimitNOFILE= sets the hard one); CAP_SYS_ADMIN (CAP_BPF is enough for the steering
 * program since Linux 5.8); CAP_SYS_NICE (the SYN capture thread can ask for SCHED_FIFO,
 * but the relay never does). Children inherit the ambient set: nft, ip and iptables run with it.
 */
export const RELAY_CAPABILITIES = {
  CAP_NET_ADMIN: 'nftables rules and policy routes of --intercept, IP_TRANSPARENT (tproxy), '
    + 'the iptables rules and NFQUEUE of early SYN (and SO_RCVBUFFORCE on its netlink sockets), '
    + 'Turbo-Start\'s routes to peers (ip route initcwnd/initrwnd)',
  CAP_NET_BIND_SERVICE: 'listeners (-L, --accept, --intercept-listen, --metrics) on ports below 1024',
  CAP_BPF: 'the SK_REUSEPORT steering program and its REUSEPORT_SOCKARRAY map (more than one worker; '
    + 'early SYN needs it then too)',
} as const;
export type RelayCapability = keyof typeof RELAY_CAPABILITIES;

/** Whether capability `bit` is in the effective set; undefined when /proc cannot tell. */
export function hasEffectiveCapability(bit: number, statusText?: string): boolean | undefined {
  let text = statusText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/status', 'utf8');
    } catch {
      return undefined;
    }
  }
  const m = /^CapEff:\s*([0-9a-f]+)$/im.exec(text);
  if (m?.[1] === undefined) return undefined;
  return ((BigInt(`0x${m[1]}`) >> BigInt(bit)) & 1n) === 1n;
}
