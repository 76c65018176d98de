/**
 * steer(): the one function of a connection's client side that picks the worker.
 *
 * Every place that must agree on a worker computes exactly this arithmetic: the SYN
 * capture (an xt `bpf` match, classic BPF), the SK_REUSEPORT program that picks the
 * accepting listener (src/sys/reuseport-steering.ts, eBPF), and TypeScript (early SYN's
 * pairing table, tests). It is the paper's "xor on the key", reduced to what all three
 * can compute with 32-bit unsigned arithmetic:
 *
 *   x = saddr32 ^ sport                  (both as numbers, i.e. host order of the wire value)
 *   h = (x * 0x9E3779B1) mod 2^32        (Fibonacci hashing: the golden ratio in 32 bits)
 *   worker = (h >>> 16) mod workers
 *
 * Only the client's address and port are used: the SYN and the accepted socket share
 * them, while the destination is the listener itself (and under TPROXY/REDIRECT the
 * listener's address is not the packet's destination). `sport & 1` alone would put every
 * Linux client (even source ports) on one worker; the multiply spreads the low bits of x
 * into bits 16..31, and the address enters through the xor.
 *
 * saddr32 for IPv6 is the xor of the address's four 32-bit big-endian words. An
 * IPv4-mapped address (`::ffff:a.b.c.d`, what a dual-stack listener reports for an IPv4
 * client) is the IPv4 address: the packet on the wire, which the kernel programs read,
 * is IPv4.
 */
import { parseIp } from './ip-address.js';

/** The multiplier of Fibonacci hashing, 2^32 / golden ratio, odd. */
export const STEER_MULTIPLIER = 0x9e3779b1;
/** h is shifted right by this many bits before the modulo. */
export const STEER_SHIFT = 16;
/** The largest worker count: h >>> 16 has 16 bits, so more workers than 2^16 could not all be chosen. */
export const MAX_STEER_WORKERS = 0x10000;

/** The client side of a connection: the SYN's source, the accepted socket's remote end. */
export interface SteerTuple {
  readonly address: string;
  readonly port: number;
}

/** The 32-bit fold of an address literal (IPv4 as is, IPv6 xor of its four words), unsigned. */
export function foldAddress(address: string): number {
  const ip = parseIp(address);
  if (ip === undefined) throw new RangeError(`steer: '${address}' is not an IP address literal`);
  if (ip.family === 4) return Number(ip.value);
  let v = ip.value;
  let fold = 0;
  for (let i = 0; i < 4; i++) {
    fold ^= Number(v & 0xffff_ffffn);
    v >>= 32n;
  }
  return fold >>> 0;
}

/** The 16-bit hash of (saddr32, sport) before the modulo; exposed for tests and the BPF programs' checks. */
export function steerHash(saddr32: number, sport: number): number {
  return Math.imul((saddr32 ^ sport) >>> 0, STEER_MULTIPLIER) >>> STEER_SHIFT;
}

/** The worker index in [0, workers) that owns the connection from `tuple`. */
export function steer(tuple: SteerTuple, workers: number): number {
  if (!Number.isInteger(workers) || workers < 1 || workers > MAX_STEER_WORKERS) {
    throw new RangeError(`steer: workers must be an integer in 1..${MAX_STEER_WORKERS}, got ${workers}`);
  }
  if (!Number.isInteger(tuple.port) || tuple.port < 0 || tuple.port > 0xffff) {
    throw new RangeError(`steer: port must be an integer in 0..65535, got ${tuple.port}`);
  }
  return steerHash(foldAddress(tuple.address), tuple.port) % workers;
}
