/**
 * Relay protocol v2: the two frames of a pooled (pre-established) connection
 * (docs/protocol.md section 13 is the normative text). A pooled connection proves itself
 * when it is opened, with an AUTH frame, waits idle, and names its target later, in a
 * TARGET frame written together with the client's first bytes.
 *
 * AUTH frame (64 bytes), written as soon as the connection is opened:
 *   off  len  field
 *   0    4    magic "tspl"
 *   4    1    version (2)
 *   5    1    frame type (1 = AUTH)
 *   6    2    reserved, must be 0
 *   8    8    timestamp, ms since the Unix epoch, big-endian
 *   16   16   nonce (random)
 *   32   32   tag: HMAC-SHA-256(header key, bytes [0, 32))
 *
 * TARGET frame (66 + N bytes), the v1 header's layout with version 2 and type 2 in the
 * flags byte; its tag also covers the AUTH frame's tag, which binds it to that one
 * connection:
 *   0    4    magic;  4  1  version (2);  5  1  frame type (2 = TARGET)
 *   6..34+N   address type, length, port, timestamp, nonce, address: as in v1
 *   34+N 32   tag: HMAC-SHA-256(header key, AUTH tag ‖ bytes [0, 34+N))
 */
import { OFF_NONCE, OFF_TIMESTAMP, headerLength } from './header-layout.js';

export const POOL_VERSION = 2;
export const OFF_FRAME_TYPE = 5;

export const FrameType = { Auth: 1, Target: 2 } as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export const AUTH_OFF_RESERVED = 6;
export const AUTH_OFF_TIMESTAMP = 8;
export const AUTH_OFF_NONCE = 16;
export const AUTH_OFF_TAG = 32;
export const AUTH_FRAME_LENGTH = 64;

/** The target frame shares the v1 offsets from byte 6 on. */
export const TARGET_OFF_TIMESTAMP = OFF_TIMESTAMP;
export const TARGET_OFF_NONCE = OFF_NONCE;
export const targetFrameLength = headerLength;
