/**
 * TUN devices (Documentation/networking/tuntap.rst): open /dev/net/tun and attach the
 * fd to a layer-3 device with ioctl(TUNSETIFF, IFF_TUN | IFF_NO_PI), so each read()
 * returns one IP packet and each write() injects one.
 *
 * The device lives as long as the fd (it is not made persistent), so a crashed owner
 * leaves no device behind. The fd keeps working after `ip link set DEV netns NS`.
 */
import { O_CLOEXEC, O_NONBLOCK, O_RDWR, close, ioctl, open } from './fd.js';

const TUNSETIFF = 0x400454ca; // _IOW('T', 202, int)
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
/** Fail with EBUSY rather than attach to an existing (persistent) device of that name. */
const IFF_TUN_EXCL = 0x8000;
const IFNAMSIZ = 16;
const IFREQ_BYTES = 40; // struct ifreq: char ifr_name[16]; union { short ifr_flags; ... }

/** Interface names are at most 15 bytes; the kernel rejects longer ones. */
export const MAX_IFNAME_LENGTH = IFNAMSIZ - 1;

export interface TunDevice {
  readonly fd: number;
  /** The name the kernel gave the device (resolves a '%d' pattern). */
  readonly name: string;
}

export interface OpenTunOptions {
  /** O_NONBLOCK on the fd (default true): read() returns WOULD_BLOCK when empty. */
  readonly nonBlocking?: boolean;
}

export function openTun(name: string, options: OpenTunOptions = {}): TunDevice {
  const nameBytes = Buffer.from(name, 'ascii');
  if (nameBytes.length === 0 || nameBytes.length > MAX_IFNAME_LENGTH) {
    throw new RangeError(`TUN device name '${name}' must be 1..${MAX_IFNAME_LENGTH} bytes`);
  }
  const flags = O_RDWR | O_CLOEXEC | ((options.nonBlocking ?? true) ? O_NONBLOCK : 0);
  const fd = open('/dev/net/tun', flags);
  try {
    const ifr = Buffer.alloc(IFREQ_BYTES);
    nameBytes.copy(ifr, 0);
    ifr.writeUInt16LE(IFF_TUN | IFF_NO_PI | IFF_TUN_EXCL, IFNAMSIZ);
    ioctl(fd, TUNSETIFF, ifr, `TUNSETIFF ${name}`);
    const end = ifr.indexOf(0);
    return { fd, name: ifr.toString('ascii', 0, end < 0 || end > IFNAMSIZ ? IFNAMSIZ : end) };
  } catch (err) {
    try { close(fd); } catch { /* keep the TUNSETIFF error: it is the one that explains */ }
    throw err;
  }
}

export function closeTun(device: TunDevice): void {
  close(device.fd);
}
