/**
 * TCP_INFO fields that tcpsplit reads.
 * - The RTT: on a client socket read just after connect(), before any data, tcpi_rtt is
 *   the kernel's one sample of the handshake (SYN sent to SYN-ACK received), in
 *   microseconds, free of event-loop delay. The early-SYN benchmark uses it to measure
 *   what the SYN queue adds.
 * - The state: the pool asks the kernel whether an idle pooled connection is still
 *   ESTABLISHED before handing it out (a FIN or RST may have arrived that Node has not
 *   read yet).
 * - The windows: Turbo-Start checks tcpi_snd_cwnd on a fresh peer connection.
 */
import { sysCallError } from './errno.js';
import { lastErrno, libcFunction } from './libc.js';
import { IPPROTO_TCP, SOCKET_CALL } from './socket-calls.js';

const TCP_INFO = 11;
/** struct tcp_info (include/uapi/linux/tcp.h): 8 bytes of u8 fields, then u32s from offset 8. */
const TCPI_STATE_OFFSET = 0;
const TCPI_WSCALE_OFFSET = 6;
const TCPI_SND_MSS_OFFSET = 16;
const TCPI_UNACKED_OFFSET = 24;
const TCPI_RCV_SSTHRESH_OFFSET = 64;
const TCPI_RTT_OFFSET = 68;
const TCPI_RTTVAR_OFFSET = 72;
const TCPI_SND_SSTHRESH_OFFSET = 76;
const TCPI_SND_CWND_OFFSET = 80;
const TCPI_RCV_SPACE_OFFSET = 96;
const TCPI_TOTAL_RETRANS_OFFSET = 100;
/** u64 tcpi_bytes_acked (Linux 4.1+): the pool's retry asks whether its TARGET frame was acknowledged. */
const TCPI_BYTES_ACKED_OFFSET = 120;
const TCP_INFO_BYTES = 136;

/** tcpi_state values (the kernel's TCP_ESTABLISHED ... enum). */
export const TcpState = {
  ESTABLISHED: 1, SYN_SENT: 2, SYN_RECV: 3, FIN_WAIT1: 4, FIN_WAIT2: 5, TIME_WAIT: 6, CLOSE: 7, CLOSE_WAIT: 8,
  LAST_ACK: 9, LISTEN: 10, CLOSING: 11,
} as const;

export interface TcpRtt {
  /** Smoothed RTT (after one sample: that sample), microseconds. */
  readonly rttUs: number;
  readonly rttVarUs: number;
}

export interface TcpInfo extends TcpRtt {
  /** One of TcpState. */
  readonly state: number;
  /** Congestion window, segments. */
  readonly sndCwnd: number;
  readonly sndSsthresh: number;
  readonly sndMss: number;
  readonly unacked: number;
  readonly rcvSsthresh: number;
  readonly rcvSpace: number;
  readonly sndWscale: number;
  readonly rcvWscale: number;
  /** Bytes the peer has acknowledged (RFC 4898 HCThruOctetsAcked); undefined on kernels before 4.1. */
  readonly bytesAcked: number | undefined;
  /** Segments retransmitted over the connection's life (tcpi_total_retrans). */
  readonly totalRetrans: number;
}

function readTcpInfo(fd: number): Buffer {
  const buf = Buffer.alloc(TCP_INFO_BYTES);
  const len = [TCP_INFO_BYTES];
  const getsockopt = libcFunction(SOCKET_CALL.getsockopt);
  if ((getsockopt(fd, IPPROTO_TCP, TCP_INFO, buf, len) as number) < 0) throw sysCallError(`getsockopt(fd ${fd}, TCP_INFO)`, lastErrno());
  return buf.subarray(0, len[0] ?? TCP_INFO_BYTES);
}

export function tcpRtt(fd: number): TcpRtt {
  const buf = readTcpInfo(fd);
  return { rttUs: buf.readUInt32LE(TCPI_RTT_OFFSET), rttVarUs: buf.readUInt32LE(TCPI_RTTVAR_OFFSET) };
}

export function tcpInfo(fd: number): TcpInfo {
  const buf = readTcpInfo(fd);
  const wscale = buf[TCPI_WSCALE_OFFSET] ?? 0;
  return {
    state: buf[TCPI_STATE_OFFSET] ?? 0,
    rttUs: buf.readUInt32LE(TCPI_RTT_OFFSET),
    rttVarUs: buf.readUInt32LE(TCPI_RTTVAR_OFFSET),
    sndCwnd: buf.readUInt32LE(TCPI_SND_CWND_OFFSET),
    sndSsthresh: buf.readUInt32LE(TCPI_SND_SSTHRESH_OFFSET),
    sndMss: buf.readUInt32LE(TCPI_SND_MSS_OFFSET),
    unacked: buf.readUInt32LE(TCPI_UNACKED_OFFSET),
    rcvSsthresh: buf.readUInt32LE(TCPI_RCV_SSTHRESH_OFFSET),
    rcvSpace: buf.readUInt32LE(TCPI_RCV_SPACE_OFFSET),
    // Bit fields on a little-endian machine: snd_wscale is the low nibble.
    sndWscale: wscale & 0x0f,
    rcvWscale: wscale >> 4,
    totalRetrans: buf.readUInt32LE(TCPI_TOTAL_RETRANS_OFFSET),
    bytesAcked: buf.length >= TCPI_BYTES_ACKED_OFFSET + 8 ? Number(buf.readBigUInt64LE(TCPI_BYTES_ACKED_OFFSET)) : undefined,
  };
}
