/**
 * SK_REUSEPORT steering: the kernel hands each new connection to the listener of the
 * worker that steer() (src/net/steer.ts) names, and keeps doing so across restarts.
 *
 * Plain SO_REUSEPORT picks a listener by the kernel's hash over its group in join order,
 * so the choice moves when a worker restarts (a probe matched 0 of 100 after one). Here a
 * REUSEPORT_SOCKARRAY map holds worker k's listener at key k, and a hand-assembled
 * SK_REUSEPORT program computes k from the packet and selects that slot, so a worker
 * that comes back and re-adds its listener at its own key owns the same connections.
 *
 * What the program reads (sk_reuseport_md; verified on Linux 6.18 only):
 * `data`/`data_end` start at the TCP header, so the source port is read by direct packet
 * access; the source address lies before `data`, in the IP header, so it is copied with
 * bpf_skb_load_bytes_relative(BPF_HDR_START_NET); `eth_protocol` tells IPv4 from IPv6 (a
 * dual-stack listener sees IPv4 packets). Both are accepted by the verifier for
 * BPF_PROG_TYPE_SK_REUSEPORT; the test logs the verifier's summary.
 *
 * When the chosen slot is empty (its worker is restarting) or a read fails, the program
 * returns SK_PASS without a selection and the kernel falls back to its own hash over the
 * group's listeners: the connection is served (by whichever listener that hash picks; a
 * closed one is no longer in the group) rather than refused. The little-endian
 * constants below (eth_protocol as read, byte swaps) limit it to x86_64 and arm64.
 */
import { sysCallError } from './errno.js';
import { close } from './fd.js';
import { lastErrno, libcFunction } from './libc.js';
import {
  createMap, deleteElement, encodeInsns, insn, loadProgram, lookupElement, updateElement,
  type Insn,
} from './bpf.js';
import { SOCKET_CALL, SOL_SOCKET } from './socket-calls.js';

const BPF_MAP_TYPE_REUSEPORT_SOCKARRAY = 20;
const BPF_PROG_TYPE_SK_REUSEPORT = 21;
const SO_ATTACH_REUSEPORT_EBPF = 52;
const SO_COOKIE = 57;

/** Helper ids (include/uapi/linux/bpf.h, __BPF_FUNC_MAPPER order). */
const HELPER_SKB_LOAD_BYTES_RELATIVE = 68;
const HELPER_SK_SELECT_REUSEPORT = 82;
const BPF_HDR_START_NET = 1;
const BPF_PSEUDO_MAP_FD = 1;
const SK_PASS = 1;

/** skb->protocol read as a little-endian u32: htons(ETH_P_IP) and htons(ETH_P_IPV6). */
const ETH_P_IP_LE = 0x0008;
const ETH_P_IPV6_LE = 0xdd86;

/** struct sk_reuseport_md offsets. */
const MD_DATA = 0;
const MD_DATA_END = 8;
const MD_ETH_PROTOCOL = 20;

// Opcodes: class | size/op | mode/source.
const MOV64_X = 0xbf, MOV64_K = 0xb7, ADD64_K = 0x07;
const XOR32_X = 0xac, MUL32_K = 0x24, RSH32_K = 0x74, MOD32_K = 0x94, TO_BE = 0xdc;
const LDX_DW = 0x79, LDX_W = 0x61, LDX_H = 0x69, STX_W = 0x63, LD_IMM64 = 0x18;
const JGT_X = 0x2d, JEQ_K = 0x15, JNE_K = 0x55, JA = 0x05, CALL = 0x85, EXIT = 0x95;

type Line = Insn | { readonly jump: number; readonly dst: number; readonly src: number; readonly imm: number; readonly to: string } | string;

/**
 * The steering program for `workers` listeners in map `mapFd`: the arithmetic of
 * steerHash() in src/net/steer.ts, instruction by instruction. r6 = ctx, r7 = saddr32,
 * r8 = sport; the stack holds the copied address at fp-16..fp-1 and the key at fp-20.
 */
export function steeringProgram(mapFd: number, workers: number): Buffer {
  const lines: Line[] = [
    insn(MOV64_X, 6, 1, 0, 0),                 // r6 = ctx (calls clobber r1-r5)
    insn(LDX_DW, 2, 6, MD_DATA, 0),            // r2 = data: the TCP header
    insn(LDX_DW, 3, 6, MD_DATA_END, 0),        // r3 = data_end
    insn(MOV64_X, 4, 2, 0, 0),                 // r4 = data
    insn(ADD64_K, 4, 0, 0, 2),                 // r4 = data + 2
    { jump: JGT_X, dst: 4, src: 3, imm: 0, to: 'pass' }, // fewer than 2 bytes: no port (the verifier demands this check)
    insn(LDX_H, 8, 2, 0, 0),                   // r8 = th->source, network order
    insn(TO_BE, 8, 0, 0, 16),                  // r8 = ntohs(source)
    insn(LDX_W, 2, 6, MD_ETH_PROTOCOL, 0),     // r2 = skb->protocol
    { jump: JEQ_K, dst: 2, src: 0, imm: ETH_P_IPV6_LE, to: 'v6' },
    { jump: JNE_K, dst: 2, src: 0, imm: ETH_P_IP_LE, to: 'pass' },
    // IPv4: saddr is 4 bytes at offset 12 of the IP header.
    insn(MOV64_X, 1, 6, 0, 0),                 // r1 = ctx
    insn(MOV64_K, 2, 0, 0, 12),                // r2 = offset of saddr
    insn(MOV64_X, 3, 10, 0, 0),
    insn(ADD64_K, 3, 0, 0, -16),               // r3 = fp - 16
    insn(MOV64_K, 4, 0, 0, 4),                 // r4 = 4 bytes
    insn(MOV64_K, 5, 0, 0, BPF_HDR_START_NET), // r5 = relative to the network header
    insn(CALL, 0, 0, 0, HELPER_SKB_LOAD_BYTES_RELATIVE),
    { jump: JNE_K, dst: 0, src: 0, imm: 0, to: 'pass' }, // copy failed: let the kernel choose
    insn(LDX_W, 7, 10, -16, 0),                // r7 = saddr, network order
    { jump: JA, dst: 0, src: 0, imm: 0, to: 'fold' },
    'v6',
    // IPv6: saddr is 16 bytes at offset 8 of the IPv6 header; fold = xor of its four words.
    insn(MOV64_X, 1, 6, 0, 0),
    insn(MOV64_K, 2, 0, 0, 8),
    insn(MOV64_X, 3, 10, 0, 0),
    insn(ADD64_K, 3, 0, 0, -16),
    insn(MOV64_K, 4, 0, 0, 16),
    insn(MOV64_K, 5, 0, 0, BPF_HDR_START_NET),
    insn(CALL, 0, 0, 0, HELPER_SKB_LOAD_BYTES_RELATIVE),
    { jump: JNE_K, dst: 0, src: 0, imm: 0, to: 'pass' },
    insn(LDX_W, 7, 10, -16, 0),                // w7 = word 0
    insn(LDX_W, 2, 10, -12, 0),
    insn(XOR32_X, 7, 2, 0, 0),                 // ^ word 1
    insn(LDX_W, 2, 10, -8, 0),
    insn(XOR32_X, 7, 2, 0, 0),                 // ^ word 2
    insn(LDX_W, 2, 10, -4, 0),
    insn(XOR32_X, 7, 2, 0, 0),                 // ^ word 3 (still in network order: xor commutes with the swap)
    'fold',
    insn(TO_BE, 7, 0, 0, 32),                  // w7 = saddr32 as a number
    insn(XOR32_X, 7, 8, 0, 0),                 // w7 = saddr32 ^ sport
    insn(MUL32_K, 7, 0, 0, 0x9e3779b1 | 0),    // w7 *= 0x9E3779B1 (mod 2^32)
    insn(RSH32_K, 7, 0, 0, 16),                // w7 >>= 16 (logical)
    insn(MOD32_K, 7, 0, 0, workers),           // w7 %= workers (unsigned)
    insn(STX_W, 10, 7, -20, 0),                // key at fp - 20
    insn(MOV64_X, 1, 6, 0, 0),                 // r1 = ctx
    insn(LD_IMM64, 2, BPF_PSEUDO_MAP_FD, 0, mapFd), // r2 = the map (64-bit immediate: two slots)
    insn(0, 0, 0, 0, 0),
    insn(MOV64_X, 3, 10, 0, 0),
    insn(ADD64_K, 3, 0, 0, -20),               // r3 = &key
    insn(MOV64_K, 4, 0, 0, 0),                 // r4 = flags 0
    insn(CALL, 0, 0, 0, HELPER_SK_SELECT_REUSEPORT), // its result does not matter: an empty slot falls back
    'pass',
    insn(MOV64_K, 0, 0, 0, SK_PASS),
    insn(EXIT, 0, 0, 0, 0),
  ];
  const labels = new Map<string, number>();
  let pc = 0;
  for (const line of lines) {
    if (typeof line === 'string') labels.set(line, pc);
    else pc++;
  }
  const program: Insn[] = [];
  for (const line of lines) {
    if (typeof line === 'string') continue;
    if ('to' in line) {
      const target = labels.get(line.to);
      if (target === undefined) throw new Error(`steeringProgram: no label ${line.to}`);
      program.push(insn(line.jump, line.dst, line.src, target - (program.length + 1), line.imm));
    } else {
      program.push(line);
    }
  }
  return encodeInsns(program);
}

/** SO_COOKIE: the socket's kernel-wide id, which a REUSEPORT_SOCKARRAY lookup returns. */
export function socketCookie(fd: number): bigint {
  const value = Buffer.alloc(8);
  const len = [8];
  const getsockopt = libcFunction(SOCKET_CALL.getsockopt);
  if ((getsockopt(fd, SOL_SOCKET, SO_COOKIE, value, len) as number) < 0) {
    throw sysCallError(`getsockopt(fd ${fd}, SO_COOKIE)`, lastErrno());
  }
  return value.readBigUInt64LE(0);
}

/**
 * One port's listeners, one per worker, steered by steer(). Listeners must be TCP
 * sockets bound with SO_REUSEPORT and listening (createListenerFd with reusePort).
 * Closing a listener empties its slot (the kernel does it); addListener() with the
 * new listener's fd fills it again.
 */
export class ReuseportGroup {
  readonly workers: number;
  /** The verifier's log from loading the program. */
  readonly verifierLog: string;
  #mapFd: number;
  #progFd: number;

  constructor(workers: number) {
    if (!Number.isInteger(workers) || workers < 1 || workers > 0x10000) {
      throw new RangeError(`ReuseportGroup: workers must be an integer in 1..65536, got ${workers}`);
    }
    this.workers = workers;
    // value_size 8: updates take the fd, lookups return the socket cookie.
    this.#mapFd = createMap(BPF_MAP_TYPE_REUSEPORT_SOCKARRAY, 4, 8, workers, 'tcpsplit_steer');
    try {
      const loaded = loadProgram(BPF_PROG_TYPE_SK_REUSEPORT, steeringProgram(this.#mapFd, workers), 'tcpsplit_steer');
      this.#progFd = loaded.fd;
      this.verifierLog = loaded.verifierLog;
    } catch (err) {
      close(this.#mapFd);
      throw err;
    }
  }

  /**
   * Puts worker `index`'s listener in its slot and (re)attaches the program to the
   * group through it. Attaching on every add keeps a group that was rebuilt from
   * scratch (every listener closed) steered; replacing the program with itself is atomic.
   */
  addListener(index: number, fd: number): void {
    this.#checkIndex(index);
    const prog = Buffer.alloc(4);
    prog.writeInt32LE(this.#progFd, 0);
    const setsockopt = libcFunction(SOCKET_CALL.setsockopt);
    if ((setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, prog, 4) as number) < 0) {
      throw sysCallError(`setsockopt(fd ${fd}, SO_ATTACH_REUSEPORT_EBPF)`, lastErrno());
    }
    const value = Buffer.alloc(8);
    value.writeBigUInt64LE(BigInt(fd), 0);
    updateElement(this.#mapFd, key(index), value);
  }

  /** Empties worker `index`'s slot; false if it was empty. */
  removeListener(index: number): boolean {
    this.#checkIndex(index);
    return deleteElement(this.#mapFd, key(index));
  }

  /** The cookie of the listener in slot `index` (compare with socketCookie(fd)), or undefined if empty. */
  listenerCookie(index: number): bigint | undefined {
    this.#checkIndex(index);
    const value = Buffer.alloc(8);
    return lookupElement(this.#mapFd, key(index), value) ? value.readBigUInt64LE(0) : undefined;
  }

  /** Closes the map and program fds; the attached program lives on with the group's listeners. */
  close(): void {
    if (this.#mapFd < 0) return;
    const mapFd = this.#mapFd;
    const progFd = this.#progFd;
    this.#mapFd = -1;
    this.#progFd = -1;
    try {
      close(progFd);
    } finally {
      close(mapFd);
    }
  }

  #checkIndex(index: number): void {
    if (this.#mapFd < 0) throw new Error('ReuseportGroup: closed');
    if (!Number.isInteger(index) || index < 0 || index >= this.workers) {
      throw new RangeError(`ReuseportGroup: index must be an integer in 0..${this.workers - 1}, got ${index}`);
    }
  }
}

function key(index: number): Buffer {
  const k = Buffer.alloc(4);
  k.writeUInt32LE(index, 0);
  return k;
}
