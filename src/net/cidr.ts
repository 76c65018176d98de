/**
 * An address prefix, `198.18.0.0/15` or `2001:db8::/32`. A bare address is a host
 * prefix (/32 or /128).
 *
 * Host bits must be zero: `10.0.0.5/8` is refused with a suggestion rather than
 * silently widened, because in an allow or deny rule that typo changes what the relay
 * will connect to. IPv4-mapped prefixes (`::ffff:10.0.0.0/104`) become IPv4 prefixes,
 * matching what `parseIp` does to addresses.
 */
import { ConfigError } from '../errors.js';
import { bitLength, formatIp, isIpv6Text, parseIp, type IpAddress, type IpFamily } from './ip-address.js';

export class Cidr {
  private constructor(
    readonly family: IpFamily,
    /** The network address with host bits zero. */
    readonly network: bigint,
    readonly prefixLength: number,
  ) {}

  /** Throws ConfigError with a message that says what is wrong with `text`. */
  static parse(text: string): Cidr {
    const slash = text.indexOf('/');
    const addressText = slash === -1 ? text : text.slice(0, slash);
    const ip = parseIp(addressText);
    if (ip === undefined || addressText.includes('%')) {
      throw new ConfigError(`'${text}' is not a CIDR: expected ADDRESS/PREFIX, e.g. 10.0.0.0/8 or 2001:db8::/32`);
    }
    // A mapped address written in IPv6 counts its prefix from the start of ::ffff:0:0/96.
    const offset = ip.family === 4 && isIpv6Text(addressText) ? 96 : 0;
    const writtenMax = bitLength(ip.family) + offset;
    let prefixLength = writtenMax;
    if (slash !== -1) {
      const prefixText = text.slice(slash + 1);
      if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > writtenMax) {
        throw new ConfigError(`'${text}' has a bad prefix length: expected 0..${writtenMax}`);
      }
      prefixLength = Number(prefixText);
    }
    if (prefixLength < offset) {
      throw new ConfigError(`'${text}': an IPv4-mapped prefix must be at least /96`);
    }
    const cidr = Cidr.of(ip, prefixLength - offset);
    if (cidr.network !== ip.value) {
      throw new ConfigError(`'${text}' has host bits set: did you mean ${cidr.toString()}?`);
    }
    return cidr;
  }

  /** The prefix of `prefixLength` bits that contains `ip` (host bits cleared). */
  static of(ip: IpAddress, prefixLength: number): Cidr {
    const bits = bitLength(ip.family);
    if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > bits) {
      throw new RangeError(`prefix length ${prefixLength} out of range 0..${bits}`);
    }
    return new Cidr(ip.family, ip.value & prefixMask(ip.family, prefixLength), prefixLength);
  }

  /** False for a string that is not an IP literal. */
  contains(ip: IpAddress | string): boolean {
    const addr = typeof ip === 'string' ? parseIp(ip) : ip;
    if (addr?.family !== this.family) return false;
    return (addr.value & prefixMask(this.family, this.prefixLength)) === this.network;
  }

  toString(): string {
    return `${formatIp({ family: this.family, value: this.network })}/${this.prefixLength}`;
  }
}

export function prefixMask(family: IpFamily, prefixLength: number): bigint {
  const bits = BigInt(bitLength(family));
  const all = (1n << bits) - 1n;
  return all ^ ((1n << (bits - BigInt(prefixLength))) - 1n);
}
