/**
 * src/sys: typed Linux calls through the koffi FFI, for what Node's own APIs cannot do.
 * This folder is the only place in tcpsplit that touches koffi (see libc.ts).
 *
 * - libc.ts   lazy, once-per-thread load of koffi + libc.so.6; libcFunction(prototype)
 *             binds and caches a function, which is how later calls are added
 * - errno.ts  errno names; every failure is a SysCallError naming the call and errno
 * - fd.ts     open/close/read/write/fcntl/ioctl; read/write are allocation-free
 * - poll.ts   ppoll() over a fixed fd set with a nanosecond timeout
 * - thread.ts per-thread timer slack and nice value
 * - clock.ts  an allocation-free monotonic clock (for the emulator threads)
 * - tun.ts    TUN devices (IFF_TUN | IFF_NO_PI)
 * - tcp-socket.ts socket options on Node sockets (SO_ERROR, SO_LINGER), and a reset that always closes
 * - rlimit.ts the open-files limit (getrlimit/setrlimit RLIMIT_NOFILE) and open fd count
 * - socket-factory.ts TCP fds with options set before bind/listen/connect, handed to Node
 * - bpf.ts    the bpf(2) call (maps, program load with the verifier log) and eBPF encoding
 * - original-dst.ts an intercepted connection's original destination (SO_ORIGINAL_DST,
 *             IP6T_SO_ORIGINAL_DST, or the local address under TPROXY)
 * - capability.ts the effective capability set (CAP_NET_ADMIN before --intercept), and
 *             the capabilities the relay uses (RELAY_CAPABILITIES, granted by deploy/tcpsplit.service)
 * - sd-notify.ts sd_notify(3): READY=1 and friends to $NOTIFY_SOCKET, and a receiver for tests
 * - reuseport-steering.ts ReuseportGroup: SK_REUSEPORT program + REUSEPORT_SOCKARRAY that
 *             steers each connection to the listener steer() (src/net/steer.ts) names
 * - nfqueue.ts NfQueue: an NFQUEUE reader over nfnetlink_queue (bind, copy, ACCEPT verdicts)
 * - tcp-info.ts TCP_INFO: the handshake RTT, the state (pool liveness), snd_cwnd (Turbo-Start)
 * - saved-syn.ts TCP_SAVE_SYN / TCP_SAVED_SYN: the SYN that made an accepted socket (its ISN)
 *
 * Everything here is synchronous and blocks the calling thread: call it from a
 * worker_thread when it may wait (ppoll), or with non-blocking fds.
 */
export { libcAvailable, libcFunction, lastErrno } from './libc.js';
export { errnoName, sysCallError } from './errno.js';
export {
  O_CLOEXEC, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY, WOULD_BLOCK,
  close, fcntl, ioctl, open, read, setNonBlocking, write,
} from './fd.js';
export { PollSet, POLLERR, POLLHUP, POLLIN, POLLOUT } from './poll.js';
export { MonotonicClock, monotonicMicroseconds } from './clock.js';
export { setThreadNice, setThreadRealtime, setTimerSlackNs } from './thread.js';
export { MAX_IFNAME_LENGTH, closeTun, openTun, type OpenTunOptions, type TunDevice } from './tun.js';
export { socketFd, takeSocketError, setLinger, prepareSocketCalls, pendingSocketError, resetSocket } from './tcp-socket.js';
export { getOpenFilesLimit, setOpenFilesLimit, raiseOpenFilesLimit, procOpenFilesLimit, openFdCount, type OpenFilesLimit } from './rlimit.js';
export {
  DEFAULT_BACKLOG, SOCKOPT, boundPort, connectSocket, createConnectionFd, createListenerFd, getCongestion, getSocketIntOption,
  listenOnFd, setSocketOption,
  type ConnectTarget, type ConnectionFdOptions, type ListenerFdOptions, type SockoptName, type SocketOptions,
} from './socket-factory.js';
export { ReuseportGroup, socketCookie, steeringProgram } from './reuseport-steering.js';
export { NfQueue, NF_ACCEPT, NF_DROP, type NfQueueOptions, type QueuedPacket } from './nfqueue.js';
export { TcpState, tcpInfo, tcpRtt, type TcpInfo, type TcpRtt } from './tcp-info.js';
export { enableSaveSyn, takeSavedSyn } from './saved-syn.js';
export {
  decodeSockaddr, isIpv4Peer, originalDestinationOfFd, redirectedDestination, transparentDestination, unmapIpv4,
  type OriginalDestination,
} from './original-dst.js';
export { CAP_BPF, CAP_NET_ADMIN, CAP_NET_BIND_SERVICE, RELAY_CAPABILITIES, hasEffectiveCapability, type RelayCapability } from './capability.js';
export { NotifyReceiver, notifySocketAddress, sendNotify } from './sd-notify.js';
