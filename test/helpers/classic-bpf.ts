/**
 * A classic BPF interpreter for the few instructions the SYN steering program uses, with
 * the kernel's semantics for a program run at a netfilter hook: loads at SKF_NET_OFF + k
 * read the packet from its network header, big-endian; ALU on a 32-bit accumulator; a
 * load past the end ends the program with 0 (no match).
 */
import { OP, SKF_NET_OFF, type ClassicInsn } from '../../src/intercept/syn-steer-bpf.js';

export function runClassicBpf(program: readonly ClassicInsn[], packet: Buffer): number {
  let a = 0;
  let x = 0;
  const m = new Uint32Array(16);
  const offset = (k: number): number => (k | 0) - SKF_NET_OFF; // k is stored unsigned
  const load = (at: number, size: 1 | 2 | 4): number | undefined => {
    if (at < 0 || at + size > packet.length) return undefined;
    return size === 1 ? packet.readUInt8(at) : size === 2 ? packet.readUInt16BE(at) : packet.readUInt32BE(at);
  };
  for (let pc = 0; pc < program.length; pc++) {
    const p = program[pc];
    if (p === undefined) throw new Error(`pc ${pc} out of range`);
    let v: number | undefined;
    switch (p.code) {
      case OP.LD_W_ABS: v = load(offset(p.k), 4); if (v === undefined) return 0; a = v; break;
      case OP.LD_H_ABS: v = load(offset(p.k), 2); if (v === undefined) return 0; a = v; break;
      case OP.LD_B_ABS: v = load(offset(p.k), 1); if (v === undefined) return 0; a = v; break;
      case OP.LD_H_IND: v = load(offset(p.k) + x, 2); if (v === undefined) return 0; a = v; break;
      case OP.LDX_B_MSH: v = load(offset(p.k), 1); if (v === undefined) return 0; x = (v & 0xf) * 4; break;
      case OP.LDX_MEM: x = m[p.k] ?? 0; break;
      case OP.ST: m[p.k] = a; break;
      case OP.ALU_XOR_X: a = (a ^ x) >>> 0; break;
      case OP.ALU_MUL_K: a = Math.imul(a, p.k) >>> 0; break;
      case OP.ALU_RSH_K: a = a >>> p.k; break;
      case OP.ALU_MOD_K: a = a % p.k; break;
      case OP.JEQ_K: pc += a === p.k ? p.jt : p.jf; break;
      case OP.RET_K: return p.k;
      default: throw new Error(`opcode ${p.code} not interpreted`);
    }
  }
  throw new Error('fell off the end');
}
