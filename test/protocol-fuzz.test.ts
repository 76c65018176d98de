/**
 * Property tests of the header codec with fast-check. Each property states what must
 * hold for every input; numRuns are tuned so the file runs in a few seconds
 * (TCPSPLIT_FUZZ_RUNS=100000 for a deeper local run).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isIPv6 } from 'node:net';
import fc from 'fast-check';
import { encodeHeader } from '../src/protocol/header-encoder.js';
import { isValidDnsName } from '../src/protocol/target-address.js';
import {
  MAGIC, VERSION, AddressType, MAX_HEADER_LENGTH, OFF_ADDR, OFF_ADDR_LEN, TAG_LENGTH,
} from '../src/protocol/header-layout.js';
import type { HeaderDecoder } from '../src/protocol/header-decoder.js';
import type { Endpoint } from '../src/config/relay-config.js';
import { BadAddressError, TcpsplitError } from '../src/errors.js';
import { AUTH, NOW, OTHER_AUTH, SKEW_MS, feed, newDecoder, rawHeader } from './protocol-fixtures.js';

const TIMEOUT = { timeout: 20_000 };
/** How many cases a property tries. */
const RUNS = Number(process.env.TCPSPLIT_FUZZ_RUNS ?? 6000);

type Outcome = { kind: 'header'; bytes: Buffer; target: Endpoint; rest: Buffer } | { kind: 'error'; code: string } | { kind: 'more' };

/**
 * Feeds `bytes` in chunks of `sizes` (the remainder last), checking the decoder's memory
 * bound at every step; anything thrown that is not a TcpsplitError fails the property.
 */
function run(decoder: HeaderDecoder, bytes: Buffer, sizes: readonly number[]): Outcome {
  let offset = 0;
  for (const size of [...sizes, bytes.length]) {
    const chunk = bytes.subarray(offset, Math.min(bytes.length, offset + size));
    offset += chunk.length;
    const before = decoder.bufferedBytes;
    assert.ok(before < MAX_HEADER_LENGTH, `holding ${before} bytes before a push`);
    let header;
    try {
      header = decoder.push(chunk);
    } catch (err) {
      assert.ok(err instanceof TcpsplitError, `not a TcpsplitError: ${String(err)}`);
      return { kind: 'error', code: err.code };
    }
    assert.ok(decoder.bufferedBytes <= MAX_HEADER_LENGTH - 1 + chunk.length);
    if (header !== undefined) {
      return { kind: 'header', bytes: bytes.subarray(0, offset - header.rest.length), target: header.target, rest: header.rest };
    }
    assert.ok(decoder.bufferedBytes < MAX_HEADER_LENGTH, `holding ${decoder.bufferedBytes} bytes and wanting more`);
    if (offset >= bytes.length) break;
  }
  return { kind: 'more' };
}

/** What must not depend on chunking (rest does: it is what came with the last chunk). */
function summary(o: Outcome): unknown {
  return o.kind === 'header' ? { kind: o.kind, bytes: o.bytes, target: o.target } : o;
}

/** The header returned really carries a tag that verifies over its signed part. */
function assertTagVerifies(header: Buffer): void {
  const signedEnd = OFF_ADDR + (header[OFF_ADDR_LEN] ?? 0);
  assert.equal(header.length, signedEnd + TAG_LENGTH);
  assert.ok(AUTH.verify(header.subarray(0, signedEnd), header.subarray(signedEnd)), 'a header came back without a valid tag');
}

const label = fc.stringMatching(/^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/);
const dnsName = fc.oneof(
  fc.tuple(fc.array(label, { minLength: 1, maxLength: 6 }), fc.boolean())
    .map(([labels, dot]) => `${labels.join('.')}${dot ? '.' : ''}`)
    .filter((name) => name.length <= 253),
  fc.domain().filter((name) => name.length <= 253),
);
const port = fc.integer({ min: 1, max: 65535 });

const bytesArb = (maxLength: number): fc.Arbitrary<Buffer> =>
  fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));
const chunkSizes = fc.array(fc.integer({ min: 0, max: 48 }), { maxLength: 40 });

/** Inputs that get past the early checks often enough to reach the interesting ones. */
const hostileInput: fc.Arbitrary<Buffer> = fc.oneof(
  bytesArb(400),
  bytesArb(400).map((b) => Buffer.concat([MAGIC, b])),
  fc.tuple(fc.constantFrom(1, 3, 4, 0, 2, 255), fc.integer({ min: 0, max: 255 }), bytesArb(400)).map(([type, len, b]) =>
    Buffer.concat([MAGIC, Buffer.from([VERSION, 0, type, len]), b])),
  // Signed, mostly with the right key, with field values that are mostly plausible.
  { weight: 4, arbitrary: fc.record({
    version: fc.constantFrom(VERSION, VERSION, VERSION, VERSION, 2),
    flags: fc.constantFrom(0, 0, 0, 0, 0x40),
    addr: fc.oneof(
      fc.uint8Array({ minLength: 4, maxLength: 4 }).map((a) => ({ type: AddressType.IPv4, address: Buffer.from(a) })),
      fc.uint8Array({ minLength: 16, maxLength: 16 }).map((a) => ({ type: AddressType.IPv6, address: Buffer.from(a) })),
      dnsName.map((n) => ({ type: AddressType.DNS, address: Buffer.from(n) })),
      fc.tuple(fc.constantFrom(AddressType.IPv4, AddressType.IPv6, AddressType.DNS, 2), bytesArb(260))
        .map(([type, address]) => ({ type, address })),
    ),
    port: fc.oneof({ arbitrary: fc.constant(0), weight: 1 }, { arbitrary: port, weight: 9 }),
    timestampMs: fc.integer({ min: NOW - 2 * SKEW_MS, max: NOW + 2 * SKEW_MS }),
    auth: fc.constantFrom(AUTH, AUTH, AUTH, OTHER_AUTH),
    trailing: bytesArb(64),
  }).map(({ addr, ...f }) => rawHeader({ ...f, ...addr, length: Math.min(255, addr.address.length) })) },
);

void test('fuzz: any bytes in any chunks end in a header, a TcpsplitError, or a wait for more; bounded, and chunking never changes the outcome', TIMEOUT, (t) => {
  const seen = new Map<string, number>();
  fc.assert(
    fc.property(hostileInput, chunkSizes, (bytes, sizes) => {
      const chunked = run(newDecoder(), bytes, sizes);
      const key = chunked.kind === 'error' ? chunked.code : chunked.kind;
      seen.set(key, (seen.get(key) ?? 0) + 1);
      const whole = run(newDecoder(), bytes, []);
      if (chunked.kind === 'header') assertTagVerifies(chunked.bytes);
      if (whole.kind === 'header') assertTagVerifies(whole.bytes);
      assert.deepEqual(summary(chunked), summary(whole));
    }),
    { numRuns: RUNS },
  );
  t.diagnostic(`outcomes: ${[...seen].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ')}`);
});

// ---- encode -> decode -------------------------------------------------------------

const target: fc.Arbitrary<{ host: string; expected: string }> = fc.oneof(
  fc.ipV4().map((host) => ({ host, expected: host })),
  fc.ipV6().filter((h) => isIPv6(h)).map((host) => ({ host, expected: new URL(`http://[${host}]/`).hostname.slice(1, -1) })),
  dnsName.map((host) => ({ host, expected: host })),
);
void test('fuzz: encode then decode returns the target (IPv6 in RFC 5952 form), and rest is the early data', TIMEOUT, () => {
  fc.assert(
    fc.property(target, port, bytesArb(200), chunkSizes, (t, p, early, sizes) => {
      const bytes = encodeHeader({ host: t.host, port: p }, AUTH, NOW, early);
      const out = run(newDecoder(), bytes, sizes);
      assert.equal(out.kind, 'header');
      assert.deepEqual(out.target, { host: t.expected, port: p });
      assert.equal(out.bytes.length + early.length, bytes.length);
      // Early data that arrived with the completing chunk; the rest is still unread.
      assert.deepEqual(out.rest, early.subarray(0, out.rest.length));
    }),
    { numRuns: Math.ceil(RUNS / 2) },
  );
});

/** The pre-change definition of a valid name, kept as an independent oracle. */
function referenceIsValidDnsName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  return trimmed.split('.').every((l) => /^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$/.test(l));
}

void test('fuzz: a signed DNS header decodes exactly when its name is valid', TIMEOUT, () => {
  const nameBytes = fc.oneof(
    fc.array(fc.constantFrom(...'ab9_-.'.split('').map((c) => c.charCodeAt(0)), 0x20, 0x00, 0xe9, 0x41), { minLength: 1, maxLength: 80 }),
    fc.tuple(fc.integer({ min: 60, max: 66 }), fc.integer({ min: 0, max: 3 })).map(([n, extra]) =>
      [...Buffer.from(`${'x'.repeat(n)}.${'y'.repeat(extra)}`)]),
  );
  fc.assert(
    fc.property(nameBytes, (arr) => {
      const name = Buffer.from(arr);
      const text = name.toString('latin1');
      const out = feed(newDecoder(), rawHeader({ type: AddressType.DNS, address: name }));
      const valid = referenceIsValidDnsName(text);
      assert.equal(isValidDnsName(text), valid, JSON.stringify(text));
      if (valid) assert.equal(out.kind, 'header', JSON.stringify(text));
      else assert.equal(out.kind === 'error' ? out.error.code : out.kind, BadAddressError.code, JSON.stringify(text));
    }),
    { numRuns: RUNS },
  );
});

// ---- mutations of a valid header ----------------------------------------------------

type Mutation =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'set'; at: number; value: number }
  | { op: 'truncate'; at: number }
  | { op: 'insert'; at: number; bytes: Buffer }
  | { op: 'delete'; at: number; count: number };

const position = fc.integer({ min: 0, max: 400 });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: position, bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('set' as const), at: position, value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: position }),
  fc.record({ op: fc.constant('insert' as const), at: position, bytes: bytesArb(8).filter((b) => b.length > 0) }),
  fc.record({ op: fc.constant('delete' as const), at: position, count: fc.integer({ min: 1, max: 8 }) }),
);

function mutate(bytes: Buffer, m: Mutation): Buffer {
  const at = m.at % (bytes.length + 1);
  switch (m.op) {
    case 'flip': {
      if (at === bytes.length) return bytes;
      const out = Buffer.from(bytes);
      out[at] = (out[at] ?? 0) ^ (1 << m.bit);
      return out;
    }
    case 'set': {
      if (at === bytes.length) return bytes;
      const out = Buffer.from(bytes);
      out[at] = m.value;
      return out;
    }
    case 'truncate': return bytes.subarray(0, at);
    case 'insert': return Buffer.concat([bytes.subarray(0, at), m.bytes, bytes.subarray(at)]);
    case 'delete': return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + m.count)]);
  }
}

void test('fuzz: a mutated header never decodes to anything but the original target', TIMEOUT, () => {
  fc.assert(
    fc.property(target, port, bytesArb(32), fc.array(mutation, { minLength: 1, maxLength: 4 }), chunkSizes,
      (t, p, early, mutations, sizes) => {
        const original = encodeHeader({ host: t.host, port: p }, AUTH, NOW, early);
        const headerLength = original.length - early.length;
        const bytes = mutations.reduce(mutate, original);
        const out = run(newDecoder(), bytes, sizes);
        if (out.kind !== 'header') return;
        assertTagVerifies(out.bytes);
        assert.deepEqual(out.target, { host: t.expected, port: p });
        assert.deepEqual(out.bytes, original.subarray(0, headerLength), 'a header other than the original decoded');
      }),
    { numRuns: RUNS },
  );
});
