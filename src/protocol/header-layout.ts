/**
 * Relay protocol v1 header layout (docs/protocol.md is the normative text).
 *
 *   off  len  field
 *   0    4    magic 0x74 0x73 0x70 0x6c ("tspl")
 *   4    1    version (1)
 *   5    1    flags (v1: all bits reserved, must be 0)
 *   6    1    address type: 1 IPv4, 3 DNS name, 4 IPv6 (SOCKS5 numbering)
 *   7    1    address length: 4, 16, or 1..253 for a DNS name
 *   8    2    target port, big-endian, 1..65535
 *   10   8    timestamp, ms since the Unix epoch, big-endian
 *   18   16   nonce (random)
 *   34   N    address bytes
 *   34+N 32   tag: HMAC-SHA-256 over bytes [0, 34+N) with the header key
 *
 * The client's first bytes follow the tag directly.
 */

export const MAGIC = Buffer.from([0x74, 0x73, 0x70, 0x6c]);
export const VERSION = 1;

export const OFF_MAGIC = 0;
export const OFF_VERSION = 4;
export const OFF_FLAGS = 5;
export const OFF_ADDR_TYPE = 6;
export const OFF_ADDR_LEN = 7;
export const OFF_PORT = 8;
export const OFF_TIMESTAMP = 10;
export const OFF_NONCE = 18;
export const OFF_ADDR = 34;

export const FIXED_LENGTH = OFF_ADDR;
export const NONCE_LENGTH = 16;
export const TAG_LENGTH = 32;
export const MAX_DNS_NAME_LENGTH = 253;
/** No valid header is longer than this; the decoder never buffers more. */
export const MAX_HEADER_LENGTH = FIXED_LENGTH + MAX_DNS_NAME_LENGTH + TAG_LENGTH;

export const AddressType = { IPv4: 1, DNS: 3, IPv6: 4 } as const;
export type AddressType = (typeof AddressType)[keyof typeof AddressType];

/** Flags known to this version. v1 defines none; unknown bits are rejected. */
export const KNOWN_FLAGS = 0;

export function headerLength(addressLength: number): number {
  return FIXED_LENGTH + addressLength + TAG_LENGTH;
}

/** A short human description of a (possibly partial or bad) header, for logs. */
export function describeHeader(bytes: Buffer): string {
  const shown = bytes.subarray(0, Math.min(bytes.length, FIXED_LENGTH));
  if (bytes.length < FIXED_LENGTH) return `partial header (${bytes.length} bytes): ${shown.toString('hex')}`;
  return [
    `magic=${bytes.subarray(OFF_MAGIC, OFF_MAGIC + 4).toString('hex')}`,
    `version=${bytes[OFF_VERSION]}`,
    `flags=0x${(bytes[OFF_FLAGS] ?? 0).toString(16)}`,
    `addrType=${bytes[OFF_ADDR_TYPE]}`,
    `addrLen=${bytes[OFF_ADDR_LEN]}`,
    `port=${bytes.readUInt16BE(OFF_PORT)}`,
    `ts=${bytes.readBigUInt64BE(OFF_TIMESTAMP)}`,
  ].join(' ');
}
