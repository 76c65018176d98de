/**
 * The SYN queue's steering, as classic BPF for the xt `bpf` match: the program for
 * worker k of N matches a SYN exactly when steer() (src/net/steer.ts) names worker k,
 * so the rule `-m bpf --bytecode <program k> -j NFQUEUE --queue-num base+k` sends each
 * SYN's event to the worker whose SO_REUSEPORT listener will accept the connection.
 *
 * Classic BPF, not eBPF: iptables takes classic bytecode inline (`--bytecode`), with no
 * fd to pin or load. It has what steerHash() needs: 32-bit loads in network order (a
 * load from the packet is ntohl'd, so the address is "the wire value as a number"),
 * xor, multiply and shift on a 32-bit accumulator, and mod (Linux 3.7 and later).
 * Loads are relative to SKF_NET_OFF, the network header, so the program reads the same
 * bytes whatever the hook's idea of skb->data is.
 *
 * IPv4: saddr at 12; the TCP header after IHL*4 (ldxb 4*([0]&0xf)), sport its first
 * 16 bits. IPv6: the fold xors the four words of saddr (8..23); the TCP header must
 * follow the fixed 40-byte header (next header 6), else no rule matches and the SYN is
 * not queued: it is accepted normally and the connection falls back (counted as a miss).
 */
import { MAX_STEER_WORKERS, STEER_MULTIPLIER, STEER_SHIFT } from '../net/steer.js';

/** Loads at SKF_NET_OFF + k read from the network header (include/uapi/linux/filter.h). */
export const SKF_NET_OFF = -0x100000;
/** XT_BPF_MAX_NUM_INSTR. */
export const XT_BPF_MAX_INSTRUCTIONS = 64;

/** One classic instruction (struct sock_filter). */
export interface ClassicInsn {
  readonly code: number;
  readonly jt: number;
  readonly jf: number;
  /** As the kernel stores it: an unsigned 32-bit value. */
  readonly k: number;
}

// Opcodes: class | size | mode (or op | source).
export const OP = {
  LD_W_ABS: 0x20, LD_H_ABS: 0x28, LD_B_ABS: 0x30, LD_H_IND: 0x48,
  LDX_B_MSH: 0xb1, LDX_MEM: 0x61, ST: 0x02,
  ALU_XOR_X: 0xac, ALU_MUL_K: 0x24, ALU_RSH_K: 0x74, ALU_MOD_K: 0x94,
  JEQ_K: 0x15, RET_K: 0x06,
} as const;

type Line = ClassicInsn | { readonly code: number; readonly k: number; readonly onTrue: string; readonly onFalse: string } | string;

const net = (offset: number): number => (SKF_NET_OFF + offset) >>> 0;
const i = (code: number, k = 0): ClassicInsn => ({ code, jt: 0, jf: 0, k: k >>> 0 });

/** A = A ^ M[0]; M[0] = A (folds the word just loaded into the scratch slot). */
const foldIntoScratch = (): ClassicInsn[] => [i(OP.LDX_MEM, 0), i(OP.ALU_XOR_X), i(OP.ST, 0)];

/** The program that matches (returns 1) when steer() picks `worker` of `workers` for the packet's source. */
export function steeringProgram(family: 4 | 6, workers: number, worker: number): ClassicInsn[] {
  if (!Number.isInteger(workers) || workers < 1 || workers > MAX_STEER_WORKERS) {
    throw new RangeError(`steeringProgram: workers must be an integer in 1..${MAX_STEER_WORKERS}, got ${workers}`);
  }
  if (!Number.isInteger(worker) || worker < 0 || worker >= workers) {
    throw new RangeError(`steeringProgram: worker must be an integer in 0..${workers - 1}, got ${worker}`);
  }
  const hash: Line[] = [
    i(OP.LDX_MEM, 0),                  // X = saddr32 (M[0])
    i(OP.ALU_XOR_X),                   // A = sport ^ saddr32
    i(OP.ALU_MUL_K, STEER_MULTIPLIER), // A *= 0x9E3779B1 (mod 2^32)
    i(OP.ALU_RSH_K, STEER_SHIFT),      // A >>= 16
    i(OP.ALU_MOD_K, workers),          // A %= workers
    { code: OP.JEQ_K, k: worker, onTrue: 'match', onFalse: 'miss' },
    'match', i(OP.RET_K, 1),
    'miss', i(OP.RET_K, 0),
  ];
  const lines: Line[] = family === 4
    ? [
      i(OP.LD_W_ABS, net(12)),         // A = saddr
      i(OP.ST, 0),                     // M[0] = saddr32
      i(OP.LDX_B_MSH, net(0)),         // X = IHL * 4
      i(OP.LD_H_IND, net(0)),          // A = sport (first 16 bits of the TCP header at X)
      ...hash,
    ]
    : [
      i(OP.LD_B_ABS, net(6)),          // A = next header
      { code: OP.JEQ_K, k: 6, onTrue: 'tcp', onFalse: 'miss' },
      'tcp',
      i(OP.LD_W_ABS, net(8)), i(OP.ST, 0),      // M[0] = word 0 of saddr
      i(OP.LD_W_ABS, net(12)), ...foldIntoScratch(),
      i(OP.LD_W_ABS, net(16)), ...foldIntoScratch(),
      i(OP.LD_W_ABS, net(20)), ...foldIntoScratch(),
      i(OP.LD_H_ABS, net(40)),         // A = sport
      ...hash,
    ];
  return assemble(lines);
}

function assemble(lines: readonly Line[]): ClassicInsn[] {
  const labels = new Map<string, number>();
  let pc = 0;
  for (const line of lines) {
    if (typeof line === 'string') labels.set(line, pc);
    else pc++;
  }
  const out: ClassicInsn[] = [];
  for (const line of lines) {
    if (typeof line === 'string') continue;
    if ('onTrue' in line) {
      const jt = (labels.get(line.onTrue) ?? -1) - (out.length + 1);
      const jf = (labels.get(line.onFalse) ?? -1) - (out.length + 1);
      // Classic jumps go forward only, by at most 255.
      if (jt < 0 || jf < 0 || jt > 255 || jf > 255) throw new Error(`steeringProgram: bad jump ${line.onTrue}/${line.onFalse}`);
      out.push({ code: line.code, jt, jf, k: line.k >>> 0 });
    } else {
      out.push(line);
    }
  }
  if (out.length > XT_BPF_MAX_INSTRUCTIONS) throw new Error(`steeringProgram: ${out.length} instructions, xt_bpf takes ${XT_BPF_MAX_INSTRUCTIONS}`);
  return out;
}

/** iptables' `--bytecode` text: "count,code jt jf k,..." in decimal (as `nfbpf_compile` prints). */
export function formatBytecode(program: readonly ClassicInsn[]): string {
  return [String(program.length), ...program.map((p) => `${p.code} ${p.jt} ${p.jf} ${p.k}`)].join(',');
}
