/**
 * TCP_SAVE_SYN / TCP_SAVED_SYN (Linux 4.2): a listener set to save SYNs keeps the
 * headers of each connection's SYN, and the accepted socket hands them over once.
 *
 * Early SYN uses it to pair by more than the 4-tuple: the saved SYN's sequence number is
 * the client's ISN of the connection that accept() returned, so a claim can insist on the
 * early leg opened for that very SYN (src/intercept/pairing-table.ts), and a leg opened
 * for an earlier attempt on the same 4-tuple is never handed out. No privilege needed.
 * The kernel frees the saved headers at the first read (or when the socket closes); they
 * cost a small allocation per pending connection.
 */
import { sysCallError } from './errno.js';
import { lastErrno, libcFunction } from './libc.js';
import { IPPROTO_TCP, SOCKET_CALL as PROTO } from './socket-calls.js';

const TCP_SAVE_SYN = 27;
const TCP_SAVED_SYN = 28;
/** IPv6 (40) + TCP with full options (60), with room to spare. */
const SAVED_SYN_BYTES = 256;
const ENOENT = 2;

/** Makes listener `fd` save the network and TCP headers of every SYN it receives from now on. */
export function enableSaveSyn(fd: number): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(1, 0); // 1: from the network header (2 would include the link-layer header)
  if ((libcFunction(PROTO.setsockopt)(fd, IPPROTO_TCP, TCP_SAVE_SYN, v, 4) as number) < 0) {
    throw sysCallError(`setsockopt(fd ${fd}, TCP_SAVE_SYN)`, lastErrno());
  }
}

/**
 * The SYN that created accepted socket `fd`, from its network header; undefined when none
 * was saved (the listener did not save SYNs, or it was already read: the kernel hands it
 * over once).
 */
export function takeSavedSyn(fd: number): Buffer | undefined {
  const buf = Buffer.alloc(SAVED_SYN_BYTES);
  const len = [SAVED_SYN_BYTES];
  if ((libcFunction(PROTO.getsockopt)(fd, IPPROTO_TCP, TCP_SAVED_SYN, buf, len) as number) < 0) {
    const errno = lastErrno();
    if (errno === ENOENT) return undefined;
    throw sysCallError(`getsockopt(fd ${fd}, TCP_SAVED_SYN)`, errno);
  }
  const n = len[0] ?? 0;
  return n === 0 ? undefined : buf.subarray(0, n);
}
