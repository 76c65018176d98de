/**
 * Property tests of the v2 (pooled connection) frame decoders, beside protocol-fuzz.test.ts:
 * any bytes in any chunks end in a frame, a TcpsplitError or a wait for more, with bounded
 * memory, and chunking never changes the outcome. TCPSPLIT_FUZZ_RUNS raises the count.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeAuthFrame, encodeTargetFrame } from '../src/protocol/pool-frame-encoder.js';
import { FirstFrameDecoder, TargetFrameDecoder } from '../src/protocol/pool-frame-decoder.js';
import { AUTH_FRAME_LENGTH, FrameType, POOL_VERSION } from '../src/protocol/pool-frame-layout.js';
import { MAGIC, MAX_HEADER_LENGTH } from '../src/protocol/header-layout.js';
import { TcpsplitError } from '../src/errors.js';
import { AUTH, NOW, OTHER_AUTH, SKEW_MS, newGuard } from './protocol-fixtures.js';

const TIMEOUT = { timeout: 20_000 };
const RUNS = Number(process.env.TCPSPLIT_FUZZ_RUNS ?? 4000);

interface Pushable { push(chunk: Buffer): unknown; readonly bufferedBytes: number }
type Outcome = { kind: 'frame'; consumed: number; value: unknown } | { kind: 'error'; code: string } | { kind: 'more' };

function run(decoder: Pushable, bytes: Buffer, sizes: readonly number[]): Outcome {
  let offset = 0;
  for (const size of [...sizes, bytes.length]) {
    const chunk = bytes.subarray(offset, Math.min(bytes.length, offset + size));
    offset += chunk.length;
    assert.ok(decoder.bufferedBytes < MAX_HEADER_LENGTH, `holding ${decoder.bufferedBytes} bytes before a push`);
    let value: unknown;
    try {
      value = decoder.push(chunk);
    } catch (err) {
      assert.ok(err instanceof TcpsplitError, `not a TcpsplitError: ${String(err)}`);
      return { kind: 'error', code: err.code };
    }
    if (value !== undefined) {
      const rest = restOf(value);
      // What must not depend on chunking: the frame and where it ended.
      return { kind: 'frame', consumed: offset - rest.length, value: strip(value) };
    }
    if (offset >= bytes.length) break;
  }
  return { kind: 'more' };
}

function restOf(value: unknown): Buffer {
  const v = value as { rest?: Buffer; auth?: { rest: Buffer }; header?: { rest: Buffer } };
  return v.rest ?? v.auth?.rest ?? v.header?.rest ?? Buffer.alloc(0);
}

function strip(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value, (k, v: unknown) => (k === 'rest' ? undefined : v)));
}

const bytesArb = (maxLength: number): fc.Arbitrary<Buffer> => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));
const chunkSizes = fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 40 });
const authTagArb = fc.constant(encodeAuthFrame(AUTH, NOW).tag);

const hostile: fc.Arbitrary<Buffer> = fc.oneof(
  bytesArb(300),
  bytesArb(300).map((b) => Buffer.concat([MAGIC, Buffer.from([POOL_VERSION]), b])),
  fc.tuple(fc.constantFrom(0, 1, 2, 3, 255), bytesArb(300)).map(([t, b]) => Buffer.concat([MAGIC, Buffer.from([POOL_VERSION, t]), b])),
  { weight: 3, arbitrary: fc.tuple(
    fc.integer({ min: NOW - 2 * SKEW_MS, max: NOW + 2 * SKEW_MS }), fc.constantFrom(AUTH, AUTH, OTHER_AUTH), bytesArb(80),
    fc.nat({ max: 70 }), fc.integer({ min: 0, max: 255 }), fc.boolean(),
  ).map(([ts, auth, trailing, at, value, flip]) => {
    const b = Buffer.concat([encodeAuthFrame(auth, ts).bytes, trailing]);
    if (flip && at < b.length) b[at] = value;
    return b;
  }) },
  { weight: 3, arbitrary: fc.tuple(
    fc.ipV4(), fc.integer({ min: 1, max: 65535 }), fc.integer({ min: NOW - 2 * SKEW_MS, max: NOW + 2 * SKEW_MS }),
    fc.constantFrom(AUTH, AUTH, OTHER_AUTH), bytesArb(80), fc.nat({ max: 80 }), fc.integer({ min: 0, max: 255 }), fc.boolean(),
  ).map(([host, port, ts, auth, trailing, at, value, flip]) => {
    const b = encodeTargetFrame({ host, port }, auth, encodeAuthFrame(AUTH, NOW, Buffer.alloc(16, 7)).tag, ts, trailing);
    if (flip && at < b.length) b[at] = value;
    return b;
  }) },
);

void test('fuzz: the first-frame decoder (v1 header or AUTH) is total, bounded and chunking-independent', TIMEOUT, (t) => {
  const seen = new Map<string, number>();
  fc.assert(fc.property(hostile, chunkSizes, (bytes, sizes) => {
    const chunked = run(new FirstFrameDecoder(AUTH, newGuard()), bytes, sizes);
    const whole = run(new FirstFrameDecoder(AUTH, newGuard()), bytes, []);
    const key = chunked.kind === 'error' ? chunked.code : chunked.kind;
    seen.set(key, (seen.get(key) ?? 0) + 1);
    assert.deepEqual(chunked, whole);
    if (chunked.kind === 'frame' && (chunked.value as { kind: string }).kind === 'auth') assert.equal(chunked.consumed, AUTH_FRAME_LENGTH);
  }), { numRuns: RUNS });
  t.diagnostic(`outcomes: ${[...seen].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ')}`);
});

void test('fuzz: the TARGET frame decoder is total, bounded and chunking-independent, and only its own AUTH tag verifies', TIMEOUT, (t) => {
  const seen = new Map<string, number>();
  const ownTag = encodeAuthFrame(AUTH, NOW, Buffer.alloc(16, 7)).tag;
  fc.assert(fc.property(hostile, chunkSizes, fc.boolean(), authTagArb, (bytes, sizes, own, otherTag) => {
    const tag = own ? ownTag : otherTag;
    const chunked = run(new TargetFrameDecoder(AUTH, newGuard(), tag), bytes, sizes);
    const whole = run(new TargetFrameDecoder(AUTH, newGuard(), tag), bytes, []);
    const key = chunked.kind === 'error' ? chunked.code : chunked.kind;
    seen.set(key, (seen.get(key) ?? 0) + 1);
    assert.deepEqual(chunked, whole);
    if (chunked.kind === 'frame') assert.ok(own, 'a TARGET frame verified against another connection\'s AUTH tag');
  }), { numRuns: RUNS });
  t.diagnostic(`outcomes: ${[...seen].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ')}`);
});

void test('fuzz: encode then decode round-trips AUTH and TARGET frames in any chunks', TIMEOUT, () => {
  fc.assert(fc.property(fc.ipV4(), fc.integer({ min: 1, max: 65535 }), bytesArb(100), chunkSizes, (host, port, early, sizes) => {
    const guard = newGuard();
    const auth = encodeAuthFrame(AUTH, NOW);
    const a = run(new FirstFrameDecoder(AUTH, guard), auth.bytes, sizes);
    assert.equal(a.kind, 'frame');
    const frame = encodeTargetFrame({ host, port }, AUTH, auth.tag, NOW, early);
    const d = new TargetFrameDecoder(AUTH, guard, auth.tag);
    const out = run(d, frame, sizes);
    assert.equal(out.kind, 'frame');
    assert.equal(out.consumed, frame.length - early.length);
    assert.deepEqual((out.value as { target: unknown }).target, { host, port });
    assert.equal(FrameType.Target, frame[5]);
  }), { numRuns: Math.ceil(RUNS / 4) });
});
