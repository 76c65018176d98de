/**
 * The bpf(2) system call, for the few maps and programs tcpsplit loads itself (no libbpf,
 * no compiler: programs are assembled by hand from the instruction helpers below).
 *
 * glibc has no bpf() wrapper, so it goes through syscall(2) with the architecture's
 * number. Pointers inside `union bpf_attr` are the addresses of Node Buffers
 * (koffi.address); the Buffers are kept referenced until the call returns.
 */
import { BpfLoadError } from '../errors.js';
import { sysCallError } from './errno.js';
import { koffiModule, lastErrno, libcFunction } from './libc.js';

const NR_BPF: Partial<Record<NodeJS.Architecture, number>> = { x64: 321, arm64: 280 };

const BPF_MAP_CREATE = 0;
const BPF_MAP_LOOKUP_ELEM = 1;
const BPF_MAP_UPDATE_ELEM = 2;
const BPF_MAP_DELETE_ELEM = 3;
const BPF_PROG_LOAD = 5;

/** Any attr we pass fits; the kernel accepts a shorter attr than its own and zero-fills the rest. */
const ATTR_SIZE = 128;

const SYSCALL = 'long syscall(long nr, ...)';

function bpf(cmd: number, attr: Buffer): number {
  const nr = NR_BPF[process.arch];
  if (nr === undefined) throw sysCallError(`bpf() on ${process.arch}`, 38 /* ENOSYS: no syscall number known here */);
  return Number(libcFunction(SYSCALL)(nr, 'int', cmd, 'void *', attr, 'uint32_t', attr.length));
}

function address(buf: Buffer): bigint {
  return koffiModule().address(buf);
}

/** BPF_MAP_CREATE; returns the map fd (O_CLOEXEC, as every bpf fd). */
export function createMap(mapType: number, keySize: number, valueSize: number, maxEntries: number, name: string): number {
  const attr = Buffer.alloc(ATTR_SIZE);
  attr.writeUInt32LE(mapType, 0);
  attr.writeUInt32LE(keySize, 4);
  attr.writeUInt32LE(valueSize, 8);
  attr.writeUInt32LE(maxEntries, 12);
  attr.write(name.slice(0, 15), 28, 'latin1'); // map_name[16]
  const fd = bpf(BPF_MAP_CREATE, attr);
  if (fd < 0) throw sysCallError(`bpf(BPF_MAP_CREATE type ${mapType}, ${maxEntries} entries)`, lastErrno());
  return fd;
}

function elemAttr(mapFd: number, key: Buffer, value: Buffer | undefined, flags: number): Buffer {
  const attr = Buffer.alloc(ATTR_SIZE);
  attr.writeUInt32LE(mapFd, 0);
  attr.writeBigUInt64LE(address(key), 8);
  if (value !== undefined) attr.writeBigUInt64LE(address(value), 16);
  attr.writeBigUInt64LE(BigInt(flags), 24);
  return attr;
}

/** BPF_MAP_UPDATE_ELEM with BPF_ANY (0), BPF_NOEXIST (1) or BPF_EXIST (2). */
export function updateElement(mapFd: number, key: Buffer, value: Buffer, flags = 0): void {
  const attr = elemAttr(mapFd, key, value, flags);
  if (bpf(BPF_MAP_UPDATE_ELEM, attr) < 0) throw sysCallError(`bpf(BPF_MAP_UPDATE_ELEM map ${mapFd})`, lastErrno());
}

/** BPF_MAP_DELETE_ELEM; false if the key held nothing (ENOENT). */
export function deleteElement(mapFd: number, key: Buffer): boolean {
  return elementCall(BPF_MAP_DELETE_ELEM, 'BPF_MAP_DELETE_ELEM', mapFd, key, undefined);
}

/** BPF_MAP_LOOKUP_ELEM into `value`; false if the key holds nothing (ENOENT). */
export function lookupElement(mapFd: number, key: Buffer, value: Buffer): boolean {
  return elementCall(BPF_MAP_LOOKUP_ELEM, 'BPF_MAP_LOOKUP_ELEM', mapFd, key, value);
}

const ENOENT = 2;

/** A map-element command where ENOENT (no such key) is an answer, not an error. */
function elementCall(cmd: number, name: string, mapFd: number, key: Buffer, value: Buffer | undefined): boolean {
  if (bpf(cmd, elemAttr(mapFd, key, value, 0)) >= 0) return true;
  const errno = lastErrno();
  if (errno === ENOENT) return false;
  throw sysCallError(`bpf(${name} map ${mapFd})`, errno);
}

export interface LoadedProgram {
  readonly fd: number;
  /** The verifier's log (log_level 1): its last line states the instructions processed. */
  readonly verifierLog: string;
}

/**
 * BPF_PROG_LOAD with a verifier log. A refusal is a BpfLoadError whose message carries
 * the errno and the verifier's log, so a rejected program says why.
 */
export function loadProgram(progType: number, instructions: Buffer, name: string, expectedAttachType = 0): LoadedProgram {
  const license = Buffer.from('GPL\0', 'latin1');
  const log = Buffer.alloc(64 * 1024);
  const attr = Buffer.alloc(ATTR_SIZE);
  attr.writeUInt32LE(progType, 0);
  attr.writeUInt32LE(instructions.length / 8, 4);
  attr.writeBigUInt64LE(address(instructions), 8);
  attr.writeBigUInt64LE(address(license), 16);
  attr.writeUInt32LE(1, 24); // log_level
  attr.writeUInt32LE(log.length, 28);
  attr.writeBigUInt64LE(address(log), 32);
  attr.write(name.slice(0, 15), 48, 'latin1'); // prog_name[16]
  attr.writeUInt32LE(expectedAttachType, 68);
  const fd = bpf(BPF_PROG_LOAD, attr);
  const end = log.indexOf(0);
  const verifierLog = log.toString('latin1', 0, end === -1 ? log.length : end).trimEnd();
  if (fd < 0) {
    const cause = sysCallError(`bpf(BPF_PROG_LOAD ${name})`, lastErrno());
    throw new BpfLoadError(`${cause.message}; verifier log:\n${verifierLog || '(empty)'}`, { cause });
  }
  return { fd, verifierLog };
}

// ---- instruction encoding (Documentation/bpf/standardization/instruction-set.rst) ----

/** One 8-byte instruction: opcode, dst and src registers, 16-bit offset, 32-bit immediate. */
export interface Insn {
  readonly code: number;
  readonly dst: number;
  readonly src: number;
  readonly off: number;
  readonly imm: number;
}

export function insn(code: number, dst: number, src: number, off: number, imm: number): Insn {
  return { code, dst, src, off, imm };
}

/** Little-endian encoding, as the kernel reads struct bpf_insn on x86_64 and arm64. */
export function encodeInsns(program: readonly Insn[]): Buffer {
  const buf = Buffer.alloc(program.length * 8);
  program.forEach((i, n) => {
    buf.writeUInt8(i.code, n * 8);
    buf.writeUInt8((i.src << 4) | i.dst, n * 8 + 1);
    buf.writeInt16LE(i.off, n * 8 + 2);
    buf.writeInt32LE(i.imm | 0, n * 8 + 4);
  });
  return buf;
}
