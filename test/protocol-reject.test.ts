import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeHeader } from '../src/protocol/header-encoder.js';
import { AddressType, MAGIC, OFF_ADDR, OFF_PORT, OFF_TIMESTAMP, OFF_NONCE } from '../src/protocol/header-layout.js';
import {
  BadAddressError, BadAddressTypeError, BadFlagsError, BadMagicError, BadPortError, BadVersionError, HeaderAuthError,
  HeaderReplayError, HeaderStaleError, ReplayCacheFullError, TcpsplitError,
} from '../src/errors.js';
import {
  AUTH, NOW, OTHER_AUTH, SKEW_MS, feed, feedBytewise, freshNonce, newDecoder, newGuard, rawHeader,
} from './protocol-fixtures.js';

type ErrorClass = abstract new (...args: never[]) => TcpsplitError;

interface RejectCase {
  readonly name: string;
  readonly bytes: Buffer;
  readonly error: ErrorClass & { readonly code: string };
  /** Bytes fed when the decoder must throw: the first byte that makes the header bad. */
  readonly at: number;
}

const dns = (name: string | Buffer): Buffer =>
  rawHeader({ type: AddressType.DNS, address: typeof name === 'string' ? Buffer.from(name, 'latin1') : name });
const ipv4 = encodeHeader({ host: '192.0.2.1', port: 443 }, AUTH, NOW);
const fullLength = (b: Buffer): number => b.length;

const cases: readonly RejectCase[] = [
  { name: 'first byte is not the magic', bytes: Buffer.concat([Buffer.from([0x00]), ipv4.subarray(1)]), error: BadMagicError, at: 1 },
  { name: 'an HTTP request instead of a header', bytes: Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n'), error: BadMagicError, at: 1 },
  { name: 'a TLS ClientHello instead of a header', bytes: Buffer.from('160301020001', 'hex'), error: BadMagicError, at: 1 },
  { name: 'last magic byte wrong', bytes: rawHeader({ magic: Buffer.from('tspL') }), error: BadMagicError, at: 4 },
  { name: 'version 0', bytes: rawHeader({ version: 0 }), error: BadVersionError, at: 5 },
  { name: 'version 2', bytes: rawHeader({ version: 2 }), error: BadVersionError, at: 5 },
  { name: 'flag bit 0 set', bytes: rawHeader({ flags: 0x01 }), error: BadFlagsError, at: 6 },
  { name: 'flag bit 7 set', bytes: rawHeader({ flags: 0x80 }), error: BadFlagsError, at: 6 },
  { name: 'address type 0', bytes: rawHeader({ type: 0 }), error: BadAddressTypeError, at: 7 },
  { name: 'address type 2', bytes: rawHeader({ type: 2 }), error: BadAddressTypeError, at: 7 },
  { name: 'address type 5', bytes: rawHeader({ type: 5 }), error: BadAddressTypeError, at: 7 },
  { name: 'address type 255', bytes: rawHeader({ type: 255 }), error: BadAddressTypeError, at: 7 },
  { name: 'IPv4 length 5', bytes: rawHeader({ address: Buffer.from([1, 2, 3, 4, 5]) }), error: BadAddressError, at: 8 },
  { name: 'IPv4 length 0', bytes: rawHeader({ address: Buffer.alloc(0) }), error: BadAddressError, at: 8 },
  { name: 'IPv6 length 4', bytes: rawHeader({ type: AddressType.IPv6 }), error: BadAddressError, at: 8 },
  { name: 'IPv6 length 17', bytes: rawHeader({ type: AddressType.IPv6, address: Buffer.alloc(17) }), error: BadAddressError, at: 8 },
  { name: 'DNS length 0', bytes: dns(''), error: BadAddressError, at: 8 },
  { name: 'DNS length 254', bytes: dns('a'.repeat(254)), error: BadAddressError, at: 8 },
  { name: 'port 0', bytes: rawHeader({ port: 0 }), error: BadPortError, at: 10 },
  { name: 'port 0 in a DNS header', bytes: rawHeader({ type: AddressType.DNS, address: Buffer.from('a.b'), port: 0 }), error: BadPortError, at: 10 },
  // DNS names are checked byte by byte as they arrive, before the tag: these are all signed.
  { name: 'DNS name with a space', bytes: dns('exa mple.com'), error: BadAddressError, at: OFF_ADDR + 4 },
  { name: 'DNS name with a NUL', bytes: dns('example\0.com'), error: BadAddressError, at: OFF_ADDR + 8 },
  { name: 'DNS name with a non-ASCII byte', bytes: dns(Buffer.from('bücher.de', 'utf8')), error: BadAddressError, at: OFF_ADDR + 2 },
  { name: 'DNS name with a 0x80 byte', bytes: dns(Buffer.from([0x61, 0x80])), error: BadAddressError, at: OFF_ADDR + 2 },
  { name: 'DNS name with a slash', bytes: dns('a/b'), error: BadAddressError, at: OFF_ADDR + 2 },
  { name: 'DNS name with a colon (host:port smuggling)', bytes: dns('a.b:22'), error: BadAddressError, at: OFF_ADDR + 4 },
  { name: 'DNS label of 64 bytes', bytes: dns(`${'a'.repeat(64)}.com`), error: BadAddressError, at: OFF_ADDR + 64 },
  { name: 'DNS second label of 64 bytes', bytes: dns(`ab.${'c'.repeat(64)}`), error: BadAddressError, at: OFF_ADDR + 3 + 64 },
  { name: 'DNS name with a leading hyphen', bytes: dns('-abc.com'), error: BadAddressError, at: OFF_ADDR + 1 },
  { name: 'DNS label with a leading hyphen', bytes: dns('abc.-def'), error: BadAddressError, at: OFF_ADDR + 5 },
  { name: 'DNS label with a trailing hyphen', bytes: dns('abc-.com'), error: BadAddressError, at: OFF_ADDR + 5 },
  { name: 'DNS name ending in a hyphen', bytes: dns('abc.de-'), error: BadAddressError, at: OFF_ADDR + 7 },
  { name: 'DNS name with an empty label', bytes: dns('a..b'), error: BadAddressError, at: OFF_ADDR + 3 },
  { name: 'DNS name starting with a dot', bytes: dns('.a'), error: BadAddressError, at: OFF_ADDR + 1 },
  { name: 'DNS name that is just a dot', bytes: dns('.'), error: BadAddressError, at: OFF_ADDR + 1 },
  // Past the structure, only the tag can tell; it is checked once the whole header is in.
  { name: 'signed with another key', bytes: encodeHeader({ host: 'example.com', port: 443 }, OTHER_AUTH, NOW), error: HeaderAuthError, at: 0 },
  { name: 'tag of zeros', bytes: Buffer.concat([ipv4.subarray(0, -32), Buffer.alloc(32)]), error: HeaderAuthError, at: 0 },
  { name: 'stale and signed with another key (the tag is checked first)', bytes: rawHeader({ auth: OTHER_AUTH, timestampMs: NOW - 10 * SKEW_MS }), error: HeaderAuthError, at: 0 },
  { name: 'timestamp one ms too old', bytes: rawHeader({ timestampMs: NOW - SKEW_MS - 1 }), error: HeaderStaleError, at: 0 },
  { name: 'timestamp one ms too far ahead', bytes: rawHeader({ timestampMs: NOW + SKEW_MS + 1 }), error: HeaderStaleError, at: 0 },
  { name: 'timestamp 0', bytes: rawHeader({ timestampMs: 0 }), error: HeaderStaleError, at: 0 },
  { name: 'timestamp 2^64 - 1', bytes: timestampMax(), error: HeaderStaleError, at: 0 },
];

/** A header signed over the largest timestamp the field holds. */
function timestampMax(): Buffer {
  const unsigned = rawHeader();
  unsigned.writeBigUInt64BE(0xffff_ffff_ffff_ffffn, OFF_TIMESTAMP);
  const signedEnd = unsigned.length - 32;
  AUTH.tag(unsigned.subarray(0, signedEnd)).copy(unsigned, signedEnd);
  return unsigned;
}

for (const c of cases) {
  const at = c.at === 0 ? fullLength(c.bytes) : c.at;
  void test(`reject: ${c.name} -> ${c.error.code} after ${at} bytes`, () => {
    const bytewise = feedBytewise(newDecoder(), c.bytes);
    assert.equal(bytewise.kind, 'error');
    assert.ok(bytewise.error instanceof c.error, `${bytewise.error.name}: ${bytewise.error.message}`);
    assert.equal(bytewise.error.code, c.error.code);
    assert.equal(bytewise.at, at, `thrown after ${bytewise.at} bytes: ${bytewise.error.message}`);

    // Whole, and whole with early data behind it, it fails the same way.
    for (const bytes of [c.bytes, Buffer.concat([c.bytes, Buffer.from('early data')])]) {
      const whole = feed(newDecoder(), bytes);
      assert.equal(whole.kind, 'error');
      assert.equal(whole.error.code, c.error.code);
    }
  });
}

void test('reject: the decoder keeps failing once it has failed', () => {
  const decoder = newDecoder();
  assert.throws(() => decoder.push(Buffer.from([0x00])), BadMagicError);
  assert.throws(() => decoder.push(MAGIC), BadMagicError);
});

void test('a truncated tag is not a header: the decoder waits for more (the relay resets on FIN or timeout)', () => {
  const bytes = encodeHeader({ host: 'example.com', port: 443 }, AUTH, NOW);
  for (const missing of [1, 16, 32]) {
    const decoder = newDecoder();
    assert.deepEqual(feedBytewise(decoder, bytes.subarray(0, bytes.length - missing)), { kind: 'more' });
    assert.equal(decoder.bufferedBytes, bytes.length - missing);
  }
});

void test('a timestamp exactly at either edge of the skew window is accepted', () => {
  for (const timestampMs of [NOW - SKEW_MS, NOW + SKEW_MS]) {
    const out = feed(newDecoder(), rawHeader({ timestampMs }));
    assert.equal(out.kind, 'header');
  }
});

void test('a flipped bit anywhere in an IP header is refused, and by the tag outside the structural fields', () => {
  for (const host of ['192.0.2.1', '2001:db8::1']) {
    const good = encodeHeader({ host, port: 443 }, AUTH, NOW);
    for (let bit = 0; bit < good.length * 8; bit++) {
      const bad = Buffer.from(good);
      bad[bit >> 3] = (bad[bit >> 3] ?? 0) ^ (0x80 >> (bit & 7));
      const out = feed(newDecoder(), bad);
      assert.equal(out.kind, 'error', `${host}: bit ${bit} gave ${out.kind}`);
      if (bit >= OFF_PORT * 8 + 16 || (bit >= OFF_PORT * 8 && out.error.code !== BadPortError.code)) {
        assert.equal(out.error.code, HeaderAuthError.code, `${host}: bit ${bit}`);
      }
    }
  }
});

void test('a flipped bit anywhere in a DNS header is refused, even when it makes the name longer', () => {
  const good = encodeHeader({ host: 'relay-2.example.net', port: 1 }, AUTH, NOW);
  // Enough early data behind it that a longer address length still completes a "header".
  const early = Buffer.alloc(300, 0x41);
  const codes = new Set<string>();
  for (let bit = 0; bit < good.length * 8; bit++) {
    const bad = Buffer.from(good);
    bad[bit >> 3] = (bad[bit >> 3] ?? 0) ^ (0x80 >> (bit & 7));
    const out = feed(newDecoder(), Buffer.concat([bad, early]));
    assert.equal(out.kind, 'error', `bit ${bit} gave ${out.kind}`);
    codes.add(out.error.code);
  }
  assert.deepEqual([...codes].sort(), [
    BadAddressError.code, BadAddressTypeError.code, BadFlagsError.code, BadMagicError.code,
    BadPortError.code, BadVersionError.code, HeaderAuthError.code,
  ].sort());
});

void test('replay: the same header twice is refused the second time, however it is chunked', () => {
  const guard = newGuard();
  const bytes = encodeHeader({ host: 'example.com', port: 443 }, AUTH, NOW, Buffer.from('first'));
  assert.equal(feed(newDecoder(guard), bytes).kind, 'header');
  for (const chunks of [[], [1], [40, 1]]) {
    const again = feed(newDecoder(guard), bytes, chunks);
    assert.equal(again.kind, 'error');
    assert.ok(again.error instanceof HeaderReplayError, again.error.message);
  }
  // Different early data behind the same header is still the same header.
  const header = bytes.subarray(0, bytes.length - 'first'.length);
  const other = feed(newDecoder(guard), Buffer.concat([header, Buffer.from('second')]));
  assert.equal(other.kind === 'error' ? other.error.code : other.kind, HeaderReplayError.code);
});

void test('replay: a new header for the same target is not a replay', () => {
  const guard = newGuard();
  for (let i = 0; i < 10; i++) {
    assert.equal(feed(newDecoder(guard), encodeHeader({ host: 'example.com', port: 443 }, AUTH, NOW)).kind, 'header');
  }
  assert.equal(guard.size, 10);
});

void test('replay: a header refused for its tag or timestamp does not use up its nonce', () => {
  const guard = newGuard();
  const nonce = freshNonce();
  assert.equal(feed(newDecoder(guard), rawHeader({ nonce, auth: OTHER_AUTH })).kind, 'error');
  assert.equal(feed(newDecoder(guard), rawHeader({ nonce, timestampMs: NOW - 2 * SKEW_MS })).kind, 'error');
  assert.equal(feed(newDecoder(guard), rawHeader({ nonce })).kind, 'header');
});

void test('replay cache full: fail closed with REPLAY_CACHE_FULL, and a replay is still a replay', () => {
  let now = NOW;
  const guard = newGuard({ maxEntries: 3, now: () => now });
  const accepted = [1, 2, 3].map(() => rawHeader({ timestampMs: now }));
  for (const bytes of accepted) assert.equal(feed(newDecoder(guard), bytes).kind, 'header');
  const full = feed(newDecoder(guard), rawHeader({ timestampMs: now }));
  assert.equal(full.kind, 'error');
  assert.ok(full.error instanceof ReplayCacheFullError, full.error.message);
  const replay = feed(newDecoder(guard), accepted[0] ?? Buffer.alloc(0));
  assert.equal(replay.kind === 'error' ? replay.error.code : replay.kind, HeaderReplayError.code);

  // Once both generations have rotated out, there is room again.
  now += 4 * SKEW_MS;
  assert.equal(feed(newDecoder(guard), rawHeader({ timestampMs: now })).kind, 'header');
  assert.equal(guard.size, 1);
});

// ---- replay guard generations, with an injected clock ------------------------------

const S = 1000; // skew, ms

/** Records `nonce` at time `addAt`, runs other checks at `between`, then tries `nonce` again at `probeAt`. */
function remembered(addAt: number, between: readonly number[], probeAt: number): boolean {
  let now = 0;
  const guard = newGuard({ maxClockSkewMs: S, now: () => now });
  const nonce = freshNonce();
  now = addAt;
  guard.check(now, nonce);
  for (const t of between) {
    now = t;
    guard.check(now, freshNonce());
  }
  now = probeAt;
  try {
    guard.check(now, nonce);
    return false;
  } catch (err) {
    if (err instanceof HeaderReplayError) return true;
    throw err;
  }
}

void test('replay guard: a nonce is remembered for at least 2 x skew and forgotten after 4 x skew', () => {
  const addTimes = [0, 1, S, 2 * S - 1, 2 * S, 3 * S + 7, 10 * S - 1];
  for (const addAt of addTimes) {
    for (let dt = 0; dt <= 6 * S; dt += S / 4) {
      // Other traffic: none, steady, or sparse and badly aligned with the generations.
      for (const step of [0, S / 2, 1.9 * S, 3.9 * S]) {
        const between: number[] = [];
        if (step > 0) for (let t = addAt + step; t < addAt + dt; t += step) between.push(t);
        const kept = remembered(addAt, between, addAt + dt);
        const where = `added at ${addAt}, probed ${dt} ms later, traffic every ${step} ms`;
        if (dt < 2 * S) assert.equal(kept, true, where);
        if (dt >= 4 * S) assert.equal(kept, false, where);
      }
    }
  }
});

void test('replay guard: a quiet spell does not stretch a generation (regression)', () => {
  // Before generations were aligned to a fixed grid, the check at 3.9 x skew started a
  // generation there and the nonce from 0 was still refused at 5.8 x skew.
  assert.equal(remembered(0, [3.9 * S], 5.8 * S), false);
  assert.equal(remembered(0, [3.9 * S], 3.95 * S), true);
});

void test('replay guard: stale and future timestamps, and the guard keys on the first 48 bits of the nonce', () => {
  const guard = newGuard({ maxClockSkewMs: S, now: () => 10 * S });
  assert.throws(() => { guard.check(10 * S - S - 1, freshNonce()); }, HeaderStaleError);
  assert.throws(() => { guard.check(10 * S + S + 1, freshNonce()); }, HeaderStaleError);
  assert.throws(() => { guard.check(Number.NaN, freshNonce()); }, HeaderStaleError);
  const a = Buffer.alloc(16, 1);
  const b = Buffer.from(a);
  b[15] = 2; // differs only past the first 48 bits: counted as the same nonce (see docs/protocol.md)
  guard.check(10 * S, a);
  assert.throws(() => { guard.check(10 * S, b); }, HeaderReplayError);
  const c = Buffer.from(a);
  c[5] = 2;
  guard.check(10 * S, c);
});

void test('the nonce field sits where the layout says', () => {
  const nonce = freshNonce();
  const bytes = rawHeader({ nonce });
  assert.deepEqual(bytes.subarray(OFF_NONCE, OFF_NONCE + 16), nonce);
});
