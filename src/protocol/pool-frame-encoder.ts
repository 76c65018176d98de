import { randomFillSync } from 'node:crypto';
import type { Endpoint } from '../config/relay-config.js';
import type { HeaderAuth } from './header-auth.js';
import { encodeHeader } from './header-encoder.js';
import { MAGIC, NONCE_LENGTH, OFF_ADDR, OFF_ADDR_LEN, OFF_VERSION, TAG_LENGTH } from './header-layout.js';
import {
  AUTH_FRAME_LENGTH, AUTH_OFF_NONCE, AUTH_OFF_TAG, AUTH_OFF_TIMESTAMP, FrameType, OFF_FRAME_TYPE, POOL_VERSION,
} from './pool-frame-layout.js';

export interface AuthFrame {
  /** The 64 bytes to write when the pooled connection opens. */
  readonly bytes: Buffer;
  /** Its tag: the TARGET frame written later on this connection is bound to it. */
  readonly tag: Buffer;
}

/**
 * The AUTH frame a pooled connection starts with. `nonce` is for reproducible examples
 * and tests only (a repeated nonce is refused as a replay).
 */
export function encodeAuthFrame(auth: HeaderAuth, nowMs: number = Date.now(), nonce?: Buffer): AuthFrame {
  if (nonce !== undefined && nonce.length !== NONCE_LENGTH) {
    throw new RangeError(`a frame nonce has ${NONCE_LENGTH} bytes, not ${nonce.length}`);
  }
  const out = Buffer.alloc(AUTH_FRAME_LENGTH);
  MAGIC.copy(out, 0);
  out[OFF_VERSION] = POOL_VERSION;
  out[OFF_FRAME_TYPE] = FrameType.Auth;
  out.writeBigUInt64BE(BigInt(Math.floor(nowMs)), AUTH_OFF_TIMESTAMP);
  if (nonce === undefined) randomFillSync(out, AUTH_OFF_NONCE, NONCE_LENGTH);
  else nonce.copy(out, AUTH_OFF_NONCE);
  const tag = auth.tag(out.subarray(0, AUTH_OFF_TAG));
  tag.copy(out, AUTH_OFF_TAG);
  return { bytes: out, tag };
}

/**
 * The TARGET frame for a pooled connection whose AUTH frame had `authTag`, followed by
 * `trailing` (the client's first bytes) so frame and data leave in one write. `nonce`
 * is the chain nonce (docs/protocol.md section 5): fresh at the first relay, the incoming
 * one when a relay passes a connection on.
 */
export function encodeTargetFrame(
  target: Endpoint, auth: HeaderAuth, authTag: Buffer, nowMs: number = Date.now(), trailing?: Buffer, nonce?: Buffer,
): Buffer {
  if (authTag.length !== TAG_LENGTH) throw new RangeError(`an AUTH tag has ${TAG_LENGTH} bytes, not ${authTag.length}`);
  // Same bytes as a v1 header up to the tag, then version, type and tag are redone.
  const out = encodeHeader(target, auth, nowMs, trailing, nonce);
  out[OFF_VERSION] = POOL_VERSION;
  out[OFF_FRAME_TYPE] = FrameType.Target;
  const signedEnd = OFF_ADDR + (out[OFF_ADDR_LEN] ?? 0);
  targetTag(auth, authTag, out.subarray(0, signedEnd)).copy(out, signedEnd);
  return out;
}

/** HMAC(header key, AUTH tag ‖ signed bytes): a TARGET frame verifies only after its own AUTH frame. */
export function targetTag(auth: HeaderAuth, authTag: Buffer, signed: Buffer): Buffer {
  return auth.tag(Buffer.concat([authTag, signed]));
}
