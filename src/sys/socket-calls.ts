/**
 * The socket system calls as koffi prototypes, and the constants of <sys/socket.h> and
 * <netinet/in.h> that several files of src/sys need (Linux; x86_64 and arm64 alike).
 *
 * One spelling of each prototype matters beyond tidiness: libc.ts caches bound functions
 * by their prototype text, so two spellings of one call would bind it twice.
 */
export const SOCKET_CALL = {
  socket: 'int socket(int domain, int type, int protocol)',
  bind: 'int bind(int fd, const void *addr, uint32_t len)',
  listen: 'int listen(int fd, int backlog)',
  getsockopt: 'int getsockopt(int fd, int level, int name, _Out_ void *val, _Inout_ uint32_t *len)',
  setsockopt: 'int setsockopt(int fd, int level, int name, const void *val, uint32_t len)',
  getsockname: 'int getsockname(int fd, _Out_ void *addr, _Inout_ uint32_t *len)',
  send: 'long send(int fd, const void *buf, unsigned long len, int flags)',
  sendto: 'long sendto(int fd, const void *buf, unsigned long len, int flags, const void *addr, uint32_t addrlen)',
  recv: 'long recv(int fd, void *buf, unsigned long len, int flags)',
} as const;

export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;

export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;

/** Option levels: SOL_IP and SOL_IPV6 are IPPROTO_IP and IPPROTO_IPV6. */
export const SOL_IP = 0;
export const SOL_SOCKET = 1;
export const IPPROTO_TCP = 6;
export const SOL_IPV6 = 41;
