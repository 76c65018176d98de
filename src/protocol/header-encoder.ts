import { randomFillSync } from 'node:crypto';
import type { Endpoint } from '../config/relay-config.js';
import type { HeaderAuth } from './header-auth.js';
import { encodeAddress } from './target-address.js';
import { BadPortError } from '../errors.js';
import {
  MAGIC, VERSION, OFF_VERSION, OFF_FLAGS, OFF_ADDR_TYPE, OFF_ADDR_LEN, OFF_PORT, OFF_TIMESTAMP,
  OFF_NONCE, OFF_ADDR, NONCE_LENGTH, headerLength,
} from './header-layout.js';

/**
 * Builds a signed v1 header for `target`. `trailing` (the client's first bytes, if any)
 * is copied in after the tag so header and data leave in one write.
 * `nonce` is for reproducible examples and tests only: a relay must let it be random,
 * since a repeated nonce is refused as a replay.
 */
export function encodeHeader(
  target: Endpoint, auth: HeaderAuth, nowMs: number = Date.now(), trailing?: Buffer, nonce?: Buffer,
): Buffer {
  if (!Number.isInteger(target.port) || target.port < 1 || target.port > 65535) {
    throw new BadPortError(`target port ${target.port} is outside 1..65535`);
  }
  if (nonce !== undefined && nonce.length !== NONCE_LENGTH) {
    throw new RangeError(`a header nonce has ${NONCE_LENGTH} bytes, not ${nonce.length}`);
  }
  const address = encodeAddress(target.host);
  const length = headerLength(address.bytes.length);
  const out = Buffer.allocUnsafe(length + (trailing?.length ?? 0));
  MAGIC.copy(out, 0);
  out[OFF_VERSION] = VERSION;
  out[OFF_FLAGS] = 0;
  out[OFF_ADDR_TYPE] = address.type;
  out[OFF_ADDR_LEN] = address.bytes.length;
  out.writeUInt16BE(target.port, OFF_PORT);
  out.writeBigUInt64BE(BigInt(Math.floor(nowMs)), OFF_TIMESTAMP);
  if (nonce === undefined) randomFillSync(out, OFF_NONCE, NONCE_LENGTH);
  else nonce.copy(out, OFF_NONCE);
  address.bytes.copy(out, OFF_ADDR);
  const signedEnd = OFF_ADDR + address.bytes.length;
  auth.tag(out.subarray(0, signedEnd)).copy(out, signedEnd);
  trailing?.copy(out, length);
  return out;
}
