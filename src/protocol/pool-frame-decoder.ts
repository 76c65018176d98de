import type { HeaderAuth } from './header-auth.js';
import type { ReplayCheck } from './replay-guard.js';
import { HeaderDecoder, checkTargetFields, type DecodedHeader } from './header-decoder.js';
import { decodeAddress } from './target-address.js';
import { targetTag } from './pool-frame-encoder.js';
import {
  MAGIC, VERSION, OFF_VERSION, OFF_ADDR_TYPE, OFF_ADDR_LEN, OFF_PORT, OFF_ADDR, FIXED_LENGTH, NONCE_LENGTH, TAG_LENGTH,
} from './header-layout.js';
import {
  AUTH_FRAME_LENGTH, AUTH_OFF_NONCE, AUTH_OFF_RESERVED, AUTH_OFF_TAG, AUTH_OFF_TIMESTAMP, FrameType, OFF_FRAME_TYPE,
  POOL_VERSION, TARGET_OFF_NONCE, TARGET_OFF_TIMESTAMP,
} from './pool-frame-layout.js';
import { BadFrameError, BadMagicError, BadVersionError, HeaderAuthError } from '../errors.js';

export interface DecodedAuthFrame {
  readonly timestampMs: number;
  /** A copy of the frame's nonce. */
  readonly nonce: Buffer;
  /** A copy of the frame's tag: the TARGET frame on this connection must be bound to it. */
  readonly tag: Buffer;
  readonly length: number;
  /** Bytes after the frame (the start of a TARGET frame, if the sender was quick). */
  readonly rest: Buffer;
}

export type FirstFrame =
  | { readonly kind: 'header'; readonly header: DecodedHeader }
  | { readonly kind: 'auth'; readonly auth: DecodedAuthFrame };

/** Accumulates chunks; one Buffer at a time, as HeaderDecoder does. */
class Bytes {
  #chunks: Buffer[] = [];
  length = 0;

  add(chunk: Buffer): Buffer {
    this.#chunks.push(chunk);
    this.length += chunk.length;
    const bytes = this.#chunks.length === 1 ? chunk : Buffer.concat(this.#chunks, this.length);
    this.#chunks = [bytes];
    return bytes;
  }

  clear(): void {
    this.#chunks = [];
  }
}

function checkMagic(bytes: Buffer): void {
  for (let i = 0; i < Math.min(bytes.length, MAGIC.length); i++) {
    if (bytes[i] !== MAGIC[i]) throw new BadMagicError('connection does not start with the tcpsplit relay magic');
  }
}

/**
 * The first frame on a peer connection (--accept with pooling on): a v1 header, handled
 * exactly as HeaderDecoder handles it, or a v2 AUTH frame. Same contract as HeaderDecoder:
 * incremental, refuses at the first bad byte, verifies the tag before the timestamp and
 * nonce are looked at (docs/protocol.md section 13).
 */
export class FirstFrameDecoder {
  readonly #auth: HeaderAuth;
  readonly #replay: ReplayCheck;
  readonly #bytes = new Bytes();
  #v1: HeaderDecoder | undefined;
  #done = false;

  constructor(auth: HeaderAuth, replay: ReplayCheck) {
    this.#auth = auth;
    this.#replay = replay;
  }

  get bufferedBytes(): number {
    return this.#v1?.bufferedBytes ?? this.#bytes.length;
  }

  push(chunk: Buffer): FirstFrame | undefined {
    if (this.#done) throw new Error('FirstFrameDecoder.push after the frame was decoded');
    if (this.#v1 !== undefined) return this.#header(this.#v1.push(chunk));
    const bytes = this.#bytes.add(chunk);
    checkMagic(bytes);
    if (bytes.length <= OFF_VERSION) return undefined;
    const version = bytes[OFF_VERSION] ?? 0;
    if (version === VERSION) {
      this.#v1 = new HeaderDecoder(this.#auth, this.#replay);
      this.#bytes.clear();
      return this.#header(this.#v1.push(bytes));
    }
    if (version !== POOL_VERSION) {
      throw new BadVersionError(`relay protocol version ${version} is not supported (this relay speaks ${VERSION} and ${POOL_VERSION})`);
    }
    if (bytes.length <= OFF_FRAME_TYPE) return undefined;
    const type = bytes[OFF_FRAME_TYPE] ?? 0;
    if (type === FrameType.Target) throw new BadFrameError('a TARGET frame on a connection that has not sent its AUTH frame');
    if (type !== FrameType.Auth) throw new BadFrameError(`unknown frame type ${type}`);
    for (let i = AUTH_OFF_RESERVED; i < Math.min(bytes.length, AUTH_OFF_TIMESTAMP); i++) {
      if (bytes[i] !== 0) throw new BadFrameError(`AUTH frame reserved byte ${i} is 0x${(bytes[i] ?? 0).toString(16)}, not 0`);
    }
    if (bytes.length < AUTH_FRAME_LENGTH) return undefined;
    if (!this.#auth.verify(bytes.subarray(0, AUTH_OFF_TAG), bytes.subarray(AUTH_OFF_TAG, AUTH_FRAME_LENGTH))) {
      throw new HeaderAuthError('AUTH frame tag does not verify: wrong key, or the frame was altered');
    }
    const timestampMs = Number(bytes.readBigUInt64BE(AUTH_OFF_TIMESTAMP));
    this.#replay.check(timestampMs, bytes.subarray(AUTH_OFF_NONCE, AUTH_OFF_NONCE + NONCE_LENGTH));
    this.#done = true;
    this.#bytes.clear();
    return {
      kind: 'auth',
      auth: {
        timestampMs,
        nonce: Buffer.from(bytes.subarray(AUTH_OFF_NONCE, AUTH_OFF_NONCE + NONCE_LENGTH)),
        tag: Buffer.from(bytes.subarray(AUTH_OFF_TAG, AUTH_FRAME_LENGTH)),
        length: AUTH_FRAME_LENGTH,
        rest: bytes.subarray(AUTH_FRAME_LENGTH),
      },
    };
  }

  #header(header: DecodedHeader | undefined): FirstFrame | undefined {
    if (header === undefined) return undefined;
    this.#done = true;
    return { kind: 'header', header };
  }
}

/**
 * The TARGET frame of an authenticated idle connection. It verifies only with the tag of
 * that connection's own AUTH frame, so a TARGET frame cannot be moved onto another
 * connection. Its nonce (the chain nonce) goes through the replay guard: the loop
 * cut-off covers pooled connections too.
 */
export class TargetFrameDecoder {
  readonly #auth: HeaderAuth;
  readonly #replay: ReplayCheck;
  readonly #authTag: Buffer;
  readonly #bytes = new Bytes();
  #done = false;

  constructor(auth: HeaderAuth, replay: ReplayCheck, authTag: Buffer) {
    this.#auth = auth;
    this.#replay = replay;
    this.#authTag = authTag;
  }

  get bufferedBytes(): number {
    return this.#bytes.length;
  }

  push(chunk: Buffer): DecodedHeader | undefined {
    if (this.#done) throw new Error('TargetFrameDecoder.push after the frame was decoded');
    const bytes = this.#bytes.add(chunk);
    checkMagic(bytes);
    if (bytes.length <= OFF_VERSION) return undefined;
    const version = bytes[OFF_VERSION] ?? 0;
    if (version !== POOL_VERSION) {
      throw new BadVersionError(`an authenticated idle connection continues with a version ${POOL_VERSION} TARGET frame, not version ${version}`);
    }
    if (bytes.length <= OFF_FRAME_TYPE) return undefined;
    const type = bytes[OFF_FRAME_TYPE] ?? 0;
    if (type === FrameType.Auth) throw new BadFrameError('a second AUTH frame on an authenticated connection');
    if (type !== FrameType.Target) throw new BadFrameError(`unknown frame type ${type}`);
    const needed = checkTargetFields(bytes) ?? FIXED_LENGTH;
    if (bytes.length < needed) return undefined;
    const signedEnd = OFF_ADDR + (bytes[OFF_ADDR_LEN] ?? 0);
    const tag = bytes.subarray(signedEnd, signedEnd + TAG_LENGTH);
    const expected = targetTag(this.#auth, this.#authTag, bytes.subarray(0, signedEnd));
    if (!this.#auth.verifyTag(expected, tag)) {
      throw new HeaderAuthError('TARGET frame tag does not verify: wrong key, altered, or moved from another connection');
    }
    const timestampMs = Number(bytes.readBigUInt64BE(TARGET_OFF_TIMESTAMP));
    this.#replay.check(timestampMs, bytes.subarray(TARGET_OFF_NONCE, TARGET_OFF_NONCE + NONCE_LENGTH));
    const host = decodeAddress(bytes[OFF_ADDR_TYPE] ?? 0, bytes.subarray(OFF_ADDR, signedEnd));
    this.#done = true;
    this.#bytes.clear();
    return {
      target: { host, port: bytes.readUInt16BE(OFF_PORT) },
      flags: 0,
      timestampMs,
      nonce: Buffer.from(bytes.subarray(TARGET_OFF_NONCE, TARGET_OFF_NONCE + NONCE_LENGTH)),
      length: needed,
      rest: bytes.subarray(needed),
    };
  }
}
