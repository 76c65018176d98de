/**
 * TCP_INFO fields that tcpsplit reads. Only the RTT so far: on a client socket read just
 * after connect(), before any data, tcpi_rtt is the kernel's one sample of the handshake
 * (SYN sent to SYN-ACK received), in microseconds, free of event-loop delay. The early-SYN
 * benchmark uses it to measure what the SYN queue adds.
 */
import { sysCallError } from './errno.js';
import { lastErrno, libcFunction } from './libc.js';

const IPPROTO_TCP = 6;
const TCP_INFO = 11;
/** struct tcp_info: 8 bytes of u8 fields, then u32s; tcpi_rtt is the 16th u32, tcpi_rttvar the 17th. */
const TCPI_RTT_OFFSET = 68;
const TCPI_RTTVAR_OFFSET = 72;
const TCP_INFO_BYTES = 104;

export interface TcpRtt {
  /** Smoothed RTT (after one sample: that sample), microseconds. */
  readonly rttUs: number;
  readonly rttVarUs: number;
}

export function tcpRtt(fd: number): TcpRtt {
  const buf = Buffer.alloc(TCP_INFO_BYTES);
  const len = [TCP_INFO_BYTES];
  const getsockopt = libcFunction('int getsockopt(int fd, int level, int name, _Out_ void *val, _Inout_ uint32_t *len)');
  if ((getsockopt(fd, IPPROTO_TCP, TCP_INFO, buf, len) as number) < 0) throw sysCallError(`getsockopt(fd ${fd}, TCP_INFO)`, lastErrno());
  return { rttUs: buf.readUInt32LE(TCPI_RTT_OFFSET), rttVarUs: buf.readUInt32LE(TCPI_RTTVAR_OFFSET) };
}
