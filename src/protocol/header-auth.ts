import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { TAG_LENGTH } from './header-layout.js';
import { KeyError } from '../errors.js';

export const MIN_KEY_BYTES = 16;

/**
 * Authenticates relay headers with HMAC-SHA-256. The pre-shared key is never used
 * directly: a header key is derived from it with HKDF (RFC 5869), so the same PSK
 * can later key other purposes without cross-protocol reuse.
 */
export class HeaderAuth {
  readonly #key: Buffer;

  constructor(preSharedKey: Buffer) {
    if (preSharedKey.length < MIN_KEY_BYTES) {
      throw new KeyError(`the pre-shared key has ${preSharedKey.length} bytes; at least ${MIN_KEY_BYTES} are needed`);
    }
    this.#key = Buffer.from(hkdfSync('sha256', preSharedKey, 'tcpsplit', 'tcpsplit v1 relay header', 32));
  }

  tag(signed: Buffer): Buffer {
    return createHmac('sha256', this.#key).update(signed).digest();
  }

  verify(signed: Buffer, tag: Buffer): boolean {
    return this.verifyTag(this.tag(signed), tag);
  }

  /** Constant-time comparison of a tag computed here with one received. */
  verifyTag(expected: Buffer, tag: Buffer): boolean {
    return tag.length === TAG_LENGTH && expected.length === TAG_LENGTH && timingSafeEqual(expected, tag);
  }
}
