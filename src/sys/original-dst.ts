/**
 * Where an intercepted connection was going before the kernel diverted it to us.
 *
 * - REDIRECT (nftables nat): the destination was rewritten; conntrack keeps the
 *   original, and getsockopt(SO_ORIGINAL_DST) returns it. IPv4 asks at SOL_IP and gets a
 *   sockaddr_in; IPv6 asks IP6T_SO_ORIGINAL_DST (the same number, 80) at SOL_IPV6 and
 *   gets a sockaddr_in6. On a dual-stack `[::]` listener the flow's family decides, not
 *   the socket's: a v4-mapped peer (::ffff:a.b.c.d) is an IPv4 conntrack entry and only
 *   the SOL_IP call finds it; a native IPv6 peer needs SOL_IPV6 (the probe).
 * - TPROXY: nothing was rewritten; the accepted socket's own (local) address is the
 *   original destination, as getsockname() tells, which Node already exposes as
 *   socket.localAddress. SO_ORIGINAL_DST returns ENOENT there (no NAT entry).
 */
import type { Socket } from 'node:net';
import { OriginalDestinationError } from '../errors.js';
import { errnoName } from './errno.js';
import { lastErrno, libcFunction } from './libc.js';
import { socketFd } from './tcp-socket.js';
import { unmapIpv4 } from '../net/ip-address.js';
import { AF_INET, AF_INET6, SOCKET_CALL, SOL_IP, SOL_IPV6 } from './socket-calls.js';

/** SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h). */
const SO_ORIGINAL_DST = 80;
const IP6T_SO_ORIGINAL_DST = 80;


export interface OriginalDestination {
  /** An IP literal; a v4-mapped address is given as plain IPv4. */
  readonly host: string;
  readonly port: number;
}

/** Whether a peer address is IPv4 (plain, or v4-mapped on a dual-stack socket). */
export function isIpv4Peer(remoteAddress: string): boolean {
  return !remoteAddress.includes(':') || (remoteAddress.toLowerCase().startsWith('::ffff:') && remoteAddress.includes('.'));
}

/** `::ffff:198.18.3.2` -> `198.18.3.2`; anything else unchanged. */
export { unmapIpv4 };

/** SO_ORIGINAL_DST or IP6T_SO_ORIGINAL_DST on a raw fd, by the flow's family. */
export function originalDestinationOfFd(fd: number, ipv4: boolean): OriginalDestination {
  const buf = Buffer.alloc(28);
  const len = [ipv4 ? 16 : 28];
  const level = ipv4 ? SOL_IP : SOL_IPV6;
  const name = ipv4 ? SO_ORIGINAL_DST : IP6T_SO_ORIGINAL_DST;
  if ((libcFunction(SOCKET_CALL.getsockopt)(fd, level, name, buf, len) as number) < 0) {
    const errno = lastErrno();
    const call = ipv4 ? 'SOL_IP, SO_ORIGINAL_DST' : 'SOL_IPV6, IP6T_SO_ORIGINAL_DST';
    throw new OriginalDestinationError(
      `getsockopt(fd ${fd}, ${call}): ${errnoName(errno)} (errno ${errno})${errno === 2 ? ': no NAT entry (not redirected)' : ''}`);
  }
  return decodeSockaddr(buf);
}

/** The original destination of a REDIRECTed connection accepted by Node. */
export function redirectedDestination(socket: Socket): OriginalDestination {
  const fd = socketFd(socket);
  if (fd === undefined) throw new OriginalDestinationError('the socket is already closed');
  return originalDestinationOfFd(fd, isIpv4Peer(socket.remoteAddress ?? ''));
}

/** The original destination of a TPROXYed connection: the accepted socket's own address. */
export function transparentDestination(socket: Socket): OriginalDestination {
  const host = socket.localAddress;
  const port = socket.localPort;
  if (host === undefined || port === undefined) throw new OriginalDestinationError('the socket has no local address (already closed)');
  return { host: unmapIpv4(host), port };
}

/** sockaddr_in / sockaddr_in6 -> {host, port}; a v4-mapped IPv6 address comes back as IPv4. */
export function decodeSockaddr(buf: Buffer): OriginalDestination {
  const family = buf.readUInt16LE(0);
  const port = buf.readUInt16BE(2);
  if (family === AF_INET) return { host: `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`, port };
  if (family === AF_INET6) {
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(8 + i * 2).toString(16));
    return { host: unmapIpv4(compressIpv6(groups)), port };
  }
  throw new OriginalDestinationError(`getsockopt returned address family ${family}, expected AF_INET or AF_INET6`);
}

/** RFC 5952 text: the longest run (2 or more) of zero groups becomes '::'; a v4-mapped tail is dotted. */
function compressIpv6(groups: string[]): string {
  if (groups.slice(0, 5).every((g) => g === '0') && groups[5] === 'ffff') {
    const hi = parseInt(groups[6] ?? '0', 16);
    const lo = parseInt(groups[7] ?? '0', 16);
    return `::ffff:${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best === -1) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}
