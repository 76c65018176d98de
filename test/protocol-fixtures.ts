/**
 * Shared fixtures for the relay protocol tests: a fixed key and clock, a raw header
 * builder that can sign fields the encoder would refuse to write, and a byte-by-byte
 * feeder that reports where the decoder gave up.
 */
import { HeaderAuth } from '../src/protocol/header-auth.js';
import { HeaderDecoder, type DecodedHeader } from '../src/protocol/header-decoder.js';
import { ReplayGuard } from '../src/protocol/replay-guard.js';
import { MAGIC, VERSION, AddressType, NONCE_LENGTH } from '../src/protocol/header-layout.js';
import { TcpsplitError } from '../src/errors.js';

export const KEY = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
export const OTHER_KEY = Buffer.from(Array.from({ length: 32 }, (_, i) => 0xff - i));
export const AUTH = new HeaderAuth(KEY);
export const OTHER_AUTH = new HeaderAuth(OTHER_KEY);
/** 2026-01-01T00:00:00Z: a fixed "now" for decoders built here. */
export const NOW = Date.UTC(2026, 0, 1);
export const SKEW_MS = 30_000;

export function newGuard(options: { now?: () => number; maxEntries?: number; maxClockSkewMs?: number } = {}): ReplayGuard {
  return new ReplayGuard({
    maxClockSkewMs: options.maxClockSkewMs ?? SKEW_MS,
    now: options.now ?? (() => NOW),
    ...(options.maxEntries === undefined ? {} : { maxEntries: options.maxEntries }),
  });
}

export function newDecoder(guard: ReplayGuard = newGuard(), auth: HeaderAuth = AUTH): HeaderDecoder {
  return new HeaderDecoder(auth, guard);
}

let nonceCounter = 0;
/** A distinct nonce per call (its first 48 bits differ, which is what the replay guard keys on). */
export function freshNonce(): Buffer {
  const nonce = Buffer.alloc(NONCE_LENGTH, 0x5a);
  nonce.writeUIntBE(++nonceCounter, 0, 6);
  return nonce;
}

export interface RawHeaderFields {
  readonly magic?: Buffer;
  readonly version?: number;
  readonly flags?: number;
  readonly type?: number;
  /** Defaults to address.length. */
  readonly length?: number;
  readonly address?: Buffer;
  readonly port?: number;
  readonly timestampMs?: number;
  readonly nonce?: Buffer;
  /** Defaults to AUTH; the tag covers whatever the other fields say. */
  readonly auth?: HeaderAuth;
  readonly trailing?: Buffer;
}

/**
 * A header built field by field and signed with a valid tag, so a test can show that a
 * structural check (not the tag) is what refuses it. Defaults: 127.0.0.1:443 at NOW.
 */
export function rawHeader(fields: RawHeaderFields = {}): Buffer {
  const address = fields.address ?? Buffer.from([127, 0, 0, 1]);
  const fixed = Buffer.alloc(34);
  (fields.magic ?? MAGIC).copy(fixed, 0, 0, 4);
  fixed[4] = fields.version ?? VERSION;
  fixed[5] = fields.flags ?? 0;
  fixed[6] = fields.type ?? AddressType.IPv4;
  fixed[7] = fields.length ?? address.length;
  fixed.writeUInt16BE(fields.port ?? 443, 8);
  fixed.writeBigUInt64BE(BigInt(fields.timestampMs ?? NOW), 10);
  (fields.nonce ?? freshNonce()).copy(fixed, 18);
  const signed = Buffer.concat([fixed, address]);
  return Buffer.concat([signed, (fields.auth ?? AUTH).tag(signed), fields.trailing ?? Buffer.alloc(0)]);
}

export type FeedOutcome =
  | { readonly kind: 'header'; readonly header: DecodedHeader; readonly at: number }
  | { readonly kind: 'error'; readonly error: TcpsplitError; readonly at: number }
  | { readonly kind: 'more' };

/**
 * Feeds `bytes` to `decoder` in chunks of the given sizes (the rest in one last chunk)
 * and reports how it ended; `at` is the number of bytes fed when it did. Anything other
 * than a TcpsplitError escapes.
 */
export function feed(decoder: HeaderDecoder, bytes: Buffer, chunkSizes: readonly number[] = []): FeedOutcome {
  let offset = 0;
  const sizes = [...chunkSizes, bytes.length];
  for (const size of sizes) {
    if (offset >= bytes.length && size !== 0) break;
    const chunk = bytes.subarray(offset, Math.min(bytes.length, offset + size));
    offset += chunk.length;
    try {
      const header = decoder.push(chunk);
      if (header !== undefined) return { kind: 'header', header, at: offset };
    } catch (err) {
      if (err instanceof TcpsplitError) return { kind: 'error', error: err, at: offset };
      throw err;
    }
  }
  return { kind: 'more' };
}

/** Feeds one byte at a time. */
export function feedBytewise(decoder: HeaderDecoder, bytes: Buffer): FeedOutcome {
  return feed(decoder, bytes, Array<number>(bytes.length).fill(1));
}
