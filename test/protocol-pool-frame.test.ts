/**
 * Relay protocol v2 (pooled connections): the AUTH and TARGET frames, encoded, decoded,
 * and refused, fed byte by byte and in one piece. docs/protocol.md section 13.
 */
import { test } from 'node:test';
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { encodeHeader } from '../src/protocol/header-encoder.js';
import { encodeAuthFrame, encodeTargetFrame } from '../src/protocol/pool-frame-encoder.js';
import { FirstFrameDecoder, TargetFrameDecoder, type FirstFrame } from '../src/protocol/pool-frame-decoder.js';
import { AUTH_FRAME_LENGTH, AUTH_OFF_TAG, FrameType, OFF_FRAME_TYPE, POOL_VERSION } from '../src/protocol/pool-frame-layout.js';
import { OFF_VERSION, OFF_ADDR, MAGIC } from '../src/protocol/header-layout.js';
import type { DecodedHeader } from '../src/protocol/header-decoder.js';
import type { ReplayGuard } from '../src/protocol/replay-guard.js';
import {
  BadFrameError, BadMagicError, BadVersionError, HeaderAuthError, HeaderReplayError, HeaderStaleError, BadPortError,
  BadAddressTypeError, TcpsplitError,
} from '../src/errors.js';
import { HeaderAuth } from '../src/protocol/header-auth.js';
import { AUTH, NOW, OTHER_AUTH, SKEW_MS, freshNonce, newGuard } from './protocol-fixtures.js';

type Outcome<T> = { kind: 'ok'; value: T; at: number } | { kind: 'error'; error: TcpsplitError; at: number } | { kind: 'more' };

function feedTo<T>(push: (b: Buffer) => T | undefined, bytes: Buffer, bytewise: boolean): Outcome<T> {
  const step = bytewise ? 1 : bytes.length;
  for (let off = 0; off < bytes.length; off += step) {
    const chunk = bytes.subarray(off, Math.min(bytes.length, off + step));
    try {
      const v = push(chunk);
      if (v !== undefined) return { kind: 'ok', value: v, at: off + chunk.length };
    } catch (err) {
      if (err instanceof TcpsplitError) return { kind: 'error', error: err, at: off + chunk.length };
      throw err;
    }
  }
  return { kind: 'more' };
}

const first = (bytes: Buffer, bytewise = false, guard: ReplayGuard = newGuard()): Outcome<FirstFrame> => {
  const d = new FirstFrameDecoder(AUTH, guard);
  return feedTo((b) => d.push(b), bytes, bytewise);
};
const second = (bytes: Buffer, authTag: Buffer, bytewise = false, guard: ReplayGuard = newGuard()): Outcome<DecodedHeader> => {
  const d = new TargetFrameDecoder(AUTH, guard, authTag);
  return feedTo((b) => d.push(b), bytes, bytewise);
};

void test('AUTH frame: 64 bytes, fixed layout, its tag covers bytes 0..31; decodes byte by byte and whole', () => {
  const nonce = Buffer.from('a0a1a2a3a4a5a6a7a8a9aaabacadaeaf', 'hex');
  const frame = encodeAuthFrame(AUTH, NOW, nonce);
  assert.equal(frame.bytes.length, AUTH_FRAME_LENGTH);
  assert.deepEqual(frame.bytes.subarray(0, 4), MAGIC);
  assert.equal(frame.bytes[OFF_VERSION], POOL_VERSION);
  assert.equal(frame.bytes[OFF_FRAME_TYPE], FrameType.Auth);
  assert.deepEqual(frame.tag, AUTH.tag(frame.bytes.subarray(0, AUTH_OFF_TAG)));
  for (const bytewise of [true, false]) {
    const trailing = Buffer.from('tspl\x02\x02');
    const out = first(Buffer.concat([frame.bytes, trailing]), bytewise);
    assert.equal(out.kind, 'ok');
    assert.equal(out.value.kind, 'auth');
    assert.equal(out.value.auth.timestampMs, NOW);
    assert.deepEqual(out.value.auth.nonce, nonce);
    assert.deepEqual(out.value.auth.tag, frame.tag);
    assert.deepEqual(out.value.auth.rest, bytewise ? Buffer.alloc(0) : trailing);
    assert.equal(out.at, bytewise ? AUTH_FRAME_LENGTH : AUTH_FRAME_LENGTH + trailing.length);
  }
});

void test('the first-frame decoder takes a v1 header exactly as HeaderDecoder does', () => {
  const header = encodeHeader({ host: '192.0.2.7', port: 8443 }, AUTH, NOW, Buffer.from('GET /'), freshNonce());
  for (const bytewise of [true, false]) {
    const out = first(header, bytewise);
    assert.equal(out.kind, 'ok');
    assert.equal(out.value.kind, 'header');
    assert.deepEqual(out.value.header.target, { host: '192.0.2.7', port: 8443 });
    if (!bytewise) assert.equal(out.value.header.rest.toString(), 'GET /');
  }
});

void test('TARGET frame: v1 layout with version 2, type 2, a tag over AUTH tag ‖ frame; early bytes follow', () => {
  const auth = encodeAuthFrame(AUTH, NOW);
  const nonce = freshNonce();
  const bytes = encodeTargetFrame({ host: 'example.com', port: 443 }, AUTH, auth.tag, NOW, Buffer.from('hello'), nonce);
  assert.equal(bytes[OFF_VERSION], POOL_VERSION);
  assert.equal(bytes[OFF_FRAME_TYPE], FrameType.Target);
  const end = OFF_ADDR + 'example.com'.length;
  assert.deepEqual(bytes.subarray(end, end + 32), AUTH.tag(Buffer.concat([auth.tag, bytes.subarray(0, end)])));
  for (const bytewise of [true, false]) {
    const out = second(bytes, auth.tag, bytewise);
    assert.equal(out.kind, 'ok');
    assert.deepEqual(out.value.target, { host: 'example.com', port: 443 });
    assert.deepEqual(out.value.nonce, nonce);
    assert.equal(out.value.length, end + 32);
    if (!bytewise) assert.equal(out.value.rest.toString(), 'hello');
  }
});

interface RejectCase {
  readonly name: string;
  readonly run: () => Outcome<unknown>;
  readonly error: { readonly code: string };
  readonly at: number;
}

const authFrame = encodeAuthFrame(AUTH, NOW);
const withByte = (b: Buffer, off: number, v: number): Buffer => { const c = Buffer.from(b); c[off] = v; return c; };
const reSigned = (b: Buffer): Buffer => { const c = Buffer.from(b); AUTH.tag(c.subarray(0, AUTH_OFF_TAG)).copy(c, AUTH_OFF_TAG); return c; };
const target = (tag = authFrame.tag, fields: { port?: number; timestampMs?: number; auth?: typeof AUTH } = {}): Buffer =>
  encodeTargetFrame({ host: '192.0.2.1', port: fields.port ?? 443 }, fields.auth ?? AUTH, tag, fields.timestampMs ?? NOW, undefined, freshNonce());

const cases: readonly RejectCase[] = [
  { name: 'first: bad magic', run: () => first(withByte(authFrame.bytes, 0, 0x00), true), error: BadMagicError, at: 1 },
  { name: 'first: version 3', run: () => first(withByte(authFrame.bytes, 4, 3), true), error: BadVersionError, at: 5 },
  { name: 'first: a TARGET frame before AUTH', run: () => first(target(), true), error: BadFrameError, at: 6 },
  { name: 'first: frame type 0', run: () => first(withByte(authFrame.bytes, 5, 0), true), error: BadFrameError, at: 6 },
  { name: 'first: frame type 9', run: () => first(withByte(authFrame.bytes, 5, 9), true), error: BadFrameError, at: 6 },
  { name: 'first: reserved byte 6 set', run: () => first(reSigned(withByte(authFrame.bytes, 6, 1)), true), error: BadFrameError, at: 7 },
  { name: 'first: reserved byte 7 set', run: () => first(reSigned(withByte(authFrame.bytes, 7, 0x80)), true), error: BadFrameError, at: 8 },
  { name: 'first: AUTH with another key', run: () => first(encodeAuthFrame(OTHER_AUTH, NOW).bytes, true), error: HeaderAuthError, at: 64 },
  { name: 'first: AUTH with a flipped tag bit', run: () => first(withByte(authFrame.bytes, 63, (authFrame.bytes[63] ?? 0) ^ 1)), error: HeaderAuthError, at: 64 },
  { name: 'first: AUTH with a changed timestamp', run: () => first(withByte(authFrame.bytes, 15, (authFrame.bytes[15] ?? 0) ^ 1)), error: HeaderAuthError, at: 64 },
  { name: 'first: AUTH too old', run: () => first(encodeAuthFrame(AUTH, NOW - SKEW_MS - 1).bytes), error: HeaderStaleError, at: 64 },
  { name: 'first: AUTH from the future', run: () => first(encodeAuthFrame(AUTH, NOW + SKEW_MS + 1).bytes), error: HeaderStaleError, at: 64 },
  { name: 'target: a v1 header instead', run: () => second(encodeHeader({ host: '192.0.2.1', port: 1 }, AUTH, NOW), authFrame.tag, true), error: BadVersionError, at: 5 },
  { name: 'target: a second AUTH frame', run: () => second(encodeAuthFrame(AUTH, NOW).bytes, authFrame.tag, true), error: BadFrameError, at: 6 },
  { name: 'target: bad magic', run: () => second(withByte(target(), 2, 0x41), authFrame.tag, true), error: BadMagicError, at: 3 },
  { name: 'target: address type 2', run: () => second(withByte(target(), 6, 2), authFrame.tag, true), error: BadAddressTypeError, at: 7 },
  { name: 'target: port 0', run: () => second(withByte(withByte(target(), 8, 0), 9, 0), authFrame.tag, true), error: BadPortError, at: 10 },
  { name: 'target: bound to another AUTH frame (spliced)', run: () => second(target(encodeAuthFrame(AUTH, NOW).tag), authFrame.tag), error: HeaderAuthError, at: 70 },
  { name: 'target: signed as a v1 header would be (no AUTH tag)', run: () => {
    const b = target(); const c = Buffer.from(b); c[4] = 1; c[5] = 0; AUTH.tag(c.subarray(0, 38)).copy(b, 38);
    return second(b, authFrame.tag);
  }, error: HeaderAuthError, at: 70 },
  { name: 'target: another key', run: () => second(target(authFrame.tag, { auth: OTHER_AUTH }), authFrame.tag), error: HeaderAuthError, at: 70 },
  { name: 'target: too old', run: () => second(target(authFrame.tag, { timestampMs: NOW - SKEW_MS - 1 }), authFrame.tag), error: HeaderStaleError, at: 70 },
];

for (const c of cases) {
  void test(`refused: ${c.name}`, () => {
    const out = c.run();
    assert.equal(out.kind, 'error', `expected ${c.error.code}, got ${out.kind}`);
    assert.equal(out.error.code, c.error.code, out.error.message);
    assert.equal(out.at, c.at);
  });
}

void test('replay guard: a replayed AUTH frame is refused; a TARGET frame whose chain nonce was seen is refused (loop cut-off)', () => {
  const guard = newGuard();
  const frame = encodeAuthFrame(AUTH, NOW);
  assert.equal(first(frame.bytes, false, guard).kind, 'ok');
  const replay = first(frame.bytes, false, guard);
  assert.equal(replay.kind, 'error');
  assert.ok(replay.error instanceof HeaderReplayError);

  const nonce = freshNonce();
  const v1 = encodeHeader({ host: '192.0.2.1', port: 80 }, AUTH, NOW, undefined, nonce);
  assert.equal(first(v1, false, guard).kind, 'ok');
  const a2 = encodeAuthFrame(AUTH, NOW);
  assert.equal(first(a2.bytes, false, guard).kind, 'ok');
  const looped = second(encodeTargetFrame({ host: '192.0.2.1', port: 80 }, AUTH, a2.tag, NOW, undefined, nonce), a2.tag, false, guard);
  assert.equal(looped.kind, 'error');
  assert.ok(looped.error instanceof HeaderReplayError);
});

void test('a forged or stale AUTH frame does not use up its nonce', () => {
  const guard = newGuard();
  const nonce = freshNonce();
  assert.equal(first(encodeAuthFrame(OTHER_AUTH, NOW, nonce).bytes, false, guard).kind, 'error');
  assert.equal(first(encodeAuthFrame(AUTH, NOW - 2 * SKEW_MS, nonce).bytes, false, guard).kind, 'error');
  assert.equal(guard.size, 0);
  assert.equal(first(encodeAuthFrame(AUTH, NOW, nonce).bytes, false, guard).kind, 'ok');
});

void test('the worked example in docs/protocol.md section 13 is what the encoders produce, and decodes', () => {
  const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
  const block = (marker: string): string => {
    const start = doc.indexOf(`<!-- ${marker} -->`);
    assert.ok(start >= 0, `docs/protocol.md has no <!-- ${marker} --> block`);
    const body = doc.indexOf('\n', doc.indexOf('```', start)) + 1;
    return doc.slice(body, doc.indexOf('```', body)).replace(/\s+/g, '');
  };
  const auth = new HeaderAuth(Buffer.from(Array.from({ length: 32 }, (_, i) => i)));
  const frame = encodeAuthFrame(auth, NOW, Buffer.from('a0a1a2a3a4a5a6a7a8a9aaabacadaeaf', 'hex'));
  assert.equal(block('example:auth-frame'), frame.bytes.toString('hex'));
  const target = encodeTargetFrame({ host: 'example.com', port: 443 }, auth, frame.tag, NOW + 5000, undefined,
    Buffer.from('b0b1b2b3b4b5b6b7b8b9babbbcbdbebf', 'hex'));
  assert.equal(block('example:target-frame'), target.toString('hex'));
  assert.equal(target.length, 77);
});
