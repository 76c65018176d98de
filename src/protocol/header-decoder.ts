import type { Endpoint } from '../config/relay-config.js';
import type { HeaderAuth } from './header-auth.js';
import type { ReplayCheck } from './replay-guard.js';
import { decodeAddress, dnsNameProblem } from './target-address.js';
import {
  BadAddressTypeError, BadFlagsError, BadMagicError, BadPortError, BadVersionError, HeaderAuthError, BadAddressError,
} from '../errors.js';
import {
  MAGIC, VERSION, KNOWN_FLAGS, AddressType, OFF_VERSION, OFF_FLAGS, OFF_ADDR_TYPE, OFF_ADDR_LEN, OFF_PORT,
  OFF_TIMESTAMP, OFF_NONCE, OFF_ADDR, FIXED_LENGTH, NONCE_LENGTH, TAG_LENGTH, MAX_DNS_NAME_LENGTH, headerLength,
} from './header-layout.js';

export interface DecodedHeader {
  readonly target: Endpoint;
  readonly flags: number;
  readonly timestampMs: number;
  /** Header size in bytes. */
  readonly length: number;
  /** Bytes that arrived after the header: the start of the forwarded stream. */
  readonly rest: Buffer;
  /** The header's nonce (a copy): a relay passes it on to the next relay (loop cut-off). */
  readonly nonce: Buffer;
}

/**
 * Incremental v1 header parser. Feed it chunks as they arrive; it returns the header
 * once complete, `undefined` while it needs more, and throws a TcpsplitError as soon as
 * the bytes seen so far cannot start a valid header. It never holds more than
 * MAX_HEADER_LENGTH bytes of header plus the one chunk that completes it.
 *
 * Structural checks run in byte order as the bytes arrive (docs/protocol.md section 6);
 * they only ever refuse. Nothing unauthenticated is trusted: the tag is verified before
 * the timestamp and nonce are looked at.
 */
export class HeaderDecoder {
  readonly #auth: HeaderAuth;
  readonly #replay: ReplayCheck;
  #chunks: Buffer[] = [];
  #buffered = 0;
  #needed = FIXED_LENGTH;
  #done = false;

  constructor(auth: HeaderAuth, replay: ReplayCheck) {
    this.#auth = auth;
    this.#replay = replay;
  }

  get bufferedBytes(): number {
    return this.#buffered;
  }

  push(chunk: Buffer): DecodedHeader | undefined {
    if (this.#done) throw new Error('HeaderDecoder.push after the header was decoded');
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const bytes = this.#chunks.length === 1 ? chunk : Buffer.concat(this.#chunks, this.#buffered);
    this.#chunks = [bytes];

    this.#needed = checkPrefix(bytes) ?? FIXED_LENGTH;
    if (this.#buffered < this.#needed) return undefined;

    const addrLen = bytes[OFF_ADDR_LEN] ?? 0;
    const signedEnd = OFF_ADDR + addrLen;
    if (!this.#auth.verify(bytes.subarray(0, signedEnd), bytes.subarray(signedEnd, signedEnd + TAG_LENGTH))) {
      throw new HeaderAuthError('header tag does not verify: wrong key, or the header was altered');
    }
    const timestampMs = Number(bytes.readBigUInt64BE(OFF_TIMESTAMP));
    this.#replay.check(timestampMs, bytes.subarray(OFF_NONCE, OFF_NONCE + NONCE_LENGTH));
    const host = decodeAddress(bytes[OFF_ADDR_TYPE] ?? 0, bytes.subarray(OFF_ADDR, signedEnd));
    this.#done = true;
    this.#chunks = [];
    return {
      target: { host, port: bytes.readUInt16BE(OFF_PORT) },
      flags: bytes[OFF_FLAGS] ?? 0,
      timestampMs,
      nonce: Buffer.from(bytes.subarray(OFF_NONCE, OFF_NONCE + NONCE_LENGTH)),
      length: this.#needed,
      rest: bytes.subarray(this.#needed),
    };
  }
}

/**
 * Structural checks on the bytes seen so far, each field as soon as its last byte has
 * arrived, so a bad header is refused at the first byte that makes it bad (and a peer
 * cannot hold a slot open by trickling a header that is already known to be bad).
 * Returns the whole header's length once the address length is known.
 */
function checkPrefix(bytes: Buffer): number | undefined {
  const n = bytes.length;
  for (let i = 0; i < Math.min(n, MAGIC.length); i++) {
    if (bytes[i] !== MAGIC[i]) throw new BadMagicError('connection does not start with the tcpsplit relay magic');
  }
  if (n <= OFF_VERSION) return undefined;
  const version = bytes[OFF_VERSION] ?? 0;
  if (version !== VERSION) throw new BadVersionError(`relay protocol version ${version} is not supported (this relay speaks ${VERSION})`);
  if (n <= OFF_FLAGS) return undefined;
  const flags = bytes[OFF_FLAGS] ?? 0;
  if ((flags & ~KNOWN_FLAGS) !== 0) throw new BadFlagsError(`unknown header flags 0x${flags.toString(16)}`);
  return checkTargetFields(bytes);
}

/**
 * The checks on bytes 6.. that a v1 header and a v2 target frame share (the address type,
 * length, port and DNS name: docs/protocol.md sections 6 and 13). Same contract as
 * checkPrefix: refuses at the first bad byte, returns the whole length once it is known.
 */
export function checkTargetFields(bytes: Buffer): number | undefined {
  const n = bytes.length;
  if (n <= OFF_ADDR_TYPE) return undefined;
  const type = bytes[OFF_ADDR_TYPE] ?? 0;
  if (type !== AddressType.IPv4 && type !== AddressType.IPv6 && type !== AddressType.DNS) {
    throw new BadAddressTypeError(`unknown address type ${type}`);
  }
  if (n <= OFF_ADDR_LEN) return undefined;
  const len = bytes[OFF_ADDR_LEN] ?? 0;
  switch (type) {
    case AddressType.IPv4: if (len !== 4) throw new BadAddressError(`IPv4 address length ${len}`); break;
    case AddressType.IPv6: if (len !== 16) throw new BadAddressError(`IPv6 address length ${len}`); break;
    case AddressType.DNS: if (len < 1 || len > MAX_DNS_NAME_LENGTH) throw new BadAddressError(`DNS name length ${len}`); break;
  }
  if (n >= OFF_PORT + 2 && bytes.readUInt16BE(OFF_PORT) === 0) throw new BadPortError('target port 0');
  if (type === AddressType.DNS && n > OFF_ADDR) {
    const name = bytes.subarray(OFF_ADDR, Math.min(n, OFF_ADDR + len));
    const problem = dnsNameProblem(name, name.length === len);
    if (problem !== undefined) throw new BadAddressError(`invalid DNS name in header: ${problem}`);
  }
  return headerLength(len);
}
