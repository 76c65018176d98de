import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { hkdfSync } from 'node:crypto';
import { encodeHeader } from '../src/protocol/header-encoder.js';
import { HeaderAuth } from '../src/protocol/header-auth.js';
import {
  FIXED_LENGTH, TAG_LENGTH, MAX_HEADER_LENGTH, OFF_ADDR, OFF_ADDR_TYPE, AddressType, describeHeader, headerLength,
} from '../src/protocol/header-layout.js';
import { BadAddressError, BadPortError, ConfigError, KeyError } from '../src/errors.js';
import { AUTH, NOW, feed, feedBytewise, freshNonce, newDecoder, newGuard } from './protocol-fixtures.js';

interface RoundTrip {
  readonly host: string;
  /** What the decoder yields: IPv6 comes back in RFC 5952 form. */
  readonly decoded?: string;
  readonly type: number;
  /** The address bytes on the wire, where a case pins them down. */
  readonly wire?: string;
}

const label63 = 'a'.repeat(63);
const name253 = `${label63}.${label63}.${label63}.${'b'.repeat(61)}`;

const roundTrips: readonly RoundTrip[] = [
  { host: '1.2.3.4', type: AddressType.IPv4, wire: '01020304' },
  { host: '0.0.0.0', type: AddressType.IPv4, wire: '00000000' },
  { host: '255.255.255.255', type: AddressType.IPv4, wire: 'ffffffff' },
  { host: '::', type: AddressType.IPv6, wire: '00'.repeat(16) },
  { host: '::1', type: AddressType.IPv6, wire: `${'00'.repeat(15)}01` },
  { host: '1::', type: AddressType.IPv6, wire: `0001${'00'.repeat(14)}` },
  { host: '::ffff:1.2.3.4', decoded: '::ffff:102:304', type: AddressType.IPv6, wire: `${'00'.repeat(10)}ffff01020304` },
  { host: '::FFFF:7F00:1', decoded: '::ffff:7f00:1', type: AddressType.IPv6 },
  { host: '2001:db8::1', type: AddressType.IPv6, wire: `20010db8${'00'.repeat(10)}0001` },
  { host: '2001:0db8:0000:0000:0000:0000:0000:0001', decoded: '2001:db8::1', type: AddressType.IPv6 },
  { host: '2001:db8:1:2:3:4:5:6', type: AddressType.IPv6, wire: '20010db8000100020003000400050006' },
  { host: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', type: AddressType.IPv6, wire: 'ff'.repeat(16) },
  // RFC 5952 4.2.2: a single zero group is not compressed; 4.2.3: the first of equal runs is.
  { host: '1:2:3:4:5:6:7::', decoded: '1:2:3:4:5:6:7:0', type: AddressType.IPv6 },
  { host: '1:0:0:2:0:0:0:3', decoded: '1:0:0:2::3', type: AddressType.IPv6 },
  { host: '1:0:0:2:0:0:3:4', decoded: '1::2:0:0:3:4', type: AddressType.IPv6 },
  { host: '1:2:3:4:5:6:1.2.3.4', decoded: '1:2:3:4:5:6:102:304', type: AddressType.IPv6 },
  { host: 'a', type: AddressType.DNS, wire: '61' },
  { host: name253, type: AddressType.DNS },
  { host: 'example.com', type: AddressType.DNS },
  { host: 'example.com.', type: AddressType.DNS },
  { host: '_sip._tcp.Example-1.org', type: AddressType.DNS },
  { host: 'xn--bcher-kva.example', type: AddressType.DNS },
];

for (const c of roundTrips) {
  for (const port of [1, 443, 65535]) {
    void test(`round trip ${c.host} port ${port}`, () => {
      const bytes = encodeHeader({ host: c.host, port }, AUTH, NOW);
      const decoded = c.decoded ?? c.host;
      const address = bytes.subarray(OFF_ADDR, bytes.length - TAG_LENGTH);
      assert.equal(bytes[OFF_ADDR_TYPE], c.type);
      if (c.wire !== undefined) assert.equal(address.toString('hex'), c.wire);
      assert.equal(bytes.length, headerLength(address.length));
      const out = feed(newDecoder(), bytes);
      assert.equal(out.kind, 'header');
      assert.deepEqual(out.header.target, { host: decoded, port });
      assert.equal(out.header.length, bytes.length);
      assert.equal(out.header.flags, 0);
      assert.equal(out.header.timestampMs, NOW);
      assert.equal(out.header.rest.length, 0);
      if (c.type === AddressType.IPv6) {
        // WHATWG URL serializes IPv6 the RFC 5952 way too: an independent oracle.
        assert.equal(`[${decoded}]`, new URL(`http://[${c.host}]/`).hostname);
      }
    });
  }
}

void test('the 253-byte name is the longest DNS name carried; 254 bytes are refused', () => {
  assert.equal(name253.length, 253);
  assert.equal(encodeHeader({ host: name253, port: 80 }, AUTH, NOW).length, MAX_HEADER_LENGTH);
  assert.throws(() => encodeHeader({ host: `${name253}b`, port: 80 }, AUTH, NOW), BadAddressError);
});

void test('the encoder refuses what it cannot carry', () => {
  for (const port of [0, -1, 65536, 1.5, Number.NaN]) {
    assert.throws(() => encodeHeader({ host: '1.2.3.4', port }, AUTH, NOW), BadPortError, `port ${port}`);
  }
  for (const host of ['', 'has space', 'a..b', '-a.b', 'a-.b', `${'a'.repeat(64)}.b`, 'bücher.de', '1.2.3.4:80', '[::1]']) {
    assert.throws(() => encodeHeader({ host, port: 80 }, AUTH, NOW), BadAddressError, `host ${JSON.stringify(host)}`);
  }
  assert.throws(() => encodeHeader({ host: 'a', port: 80 }, AUTH, NOW, undefined, Buffer.alloc(15)), RangeError);
  assert.throws(() => new HeaderAuth(Buffer.alloc(15)), KeyError);
  assert.throws(() => newGuard({ maxClockSkewMs: 0 }), ConfigError);
  assert.throws(() => newGuard({ maxEntries: 0 }), ConfigError);
});

void test('each header gets a fresh random nonce unless one is given', () => {
  const target = { host: 'example.com', port: 443 };
  const a = encodeHeader(target, AUTH, NOW);
  const b = encodeHeader(target, AUTH, NOW);
  assert.notDeepEqual(a.subarray(18, 34), b.subarray(18, 34));
  const nonce = freshNonce();
  assert.deepEqual(encodeHeader(target, AUTH, NOW, undefined, nonce), encodeHeader(target, AUTH, NOW, undefined, nonce));
});

void test('trailing early data follows the header and comes back as rest, byte for byte', () => {
  for (const size of [1, 2, 100, 64 * 1024]) {
    const early = Buffer.alloc(size);
    for (let i = 0; i < size; i++) early[i] = (i * 7 + 3) & 0xff;
    const bytes = encodeHeader({ host: 'example.com', port: 8080 }, AUTH, NOW, early);
    const length = headerLength('example.com'.length);
    assert.equal(bytes.length, length + size);
    assert.deepEqual(bytes.subarray(length), early);
    const out = feed(newDecoder(), bytes);
    assert.equal(out.kind, 'header');
    assert.equal(out.header.length, length);
    assert.deepEqual(out.header.rest, early);
  }
});

/** One header plus early data, and the result of decoding it whole. */
function splitFixture(host: string): { bytes: Buffer; length: number; early: Buffer } {
  const early = Buffer.from('GET / HTTP/1.1\r\nHost: example.com\r\n\r\n');
  const bytes = encodeHeader({ host, port: 443 }, AUTH, NOW, early, freshNonce());
  return { bytes, length: bytes.length - early.length, early };
}

for (const host of ['1.2.3.4', '2001:db8::1', 'example.com', name253]) {
  void test(`${host}: byte by byte, the header is returned on its last byte, with nothing in rest`, () => {
    const { bytes, length } = splitFixture(host);
    const decoder = newDecoder();
    const out = feedBytewise(decoder, bytes);
    assert.equal(out.kind, 'header');
    assert.equal(out.at, length);
    assert.deepEqual(out.header.target, { host, port: 443 });
    assert.equal(out.header.rest.length, 0);
    assert.throws(() => decoder.push(Buffer.from('x')), /after the header was decoded/);
  });

  void test(`${host}: every 2-chunk split gives the same header, and rest is exactly the bytes after it`, () => {
    const { bytes, length, early } = splitFixture(host);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const decoder = newDecoder();
      const first = decoder.push(bytes.subarray(0, cut));
      if (cut < length) {
        assert.equal(first, undefined, `cut ${cut}`);
        assert.equal(decoder.bufferedBytes, cut);
        const out = decoder.push(bytes.subarray(cut));
        assert.deepEqual(out?.target, { host, port: 443 }, `cut ${cut}`);
        assert.equal(out.length, length);
        assert.deepEqual(out.rest, early, `cut ${cut}`);
      } else {
        // The first chunk completes the header: rest is what of the early data came with it.
        assert.deepEqual(first?.target, { host, port: 443 }, `cut ${cut}`);
        assert.deepEqual(first.rest, bytes.subarray(length, cut), `cut ${cut}`);
      }
    }
  });
}

void test('three-chunk splits around the fixed part and the tag decode the same', () => {
  const { bytes, length } = splitFixture('example.com');
  for (const a of [1, 4, 7, 8, 10, FIXED_LENGTH - 1, FIXED_LENGTH, FIXED_LENGTH + 1]) {
    for (const b of [a, a + 1, length - TAG_LENGTH, length - 1, length, length + 1]) {
      if (b < a) continue;
      const out = feed(newDecoder(), bytes, [a, b - a]);
      assert.equal(out.kind, 'header', `${a}/${b}`);
      assert.deepEqual(out.header.target, { host: 'example.com', port: 443 });
      assert.deepEqual(out.header.rest, bytes.subarray(length, out.at));
    }
  }
});

void test('describeHeader names the fields of a whole or partial header', () => {
  const bytes = encodeHeader({ host: '1.2.3.4', port: 443 }, AUTH, NOW);
  assert.equal(
    describeHeader(bytes),
    `magic=7473706c version=1 flags=0x0 addrType=1 addrLen=4 port=443 ts=${NOW}`,
  );
  assert.equal(describeHeader(bytes.subarray(0, 6)), 'partial header (6 bytes): 7473706c0100');
});

// ---- the worked example in docs/protocol.md ---------------------------------------

const DOC = new URL('../../docs/protocol.md', import.meta.url);

/** The text of the fenced block that follows `<!-- marker -->` in the doc. */
function docBlock(doc: string, marker: string): string {
  const start = doc.indexOf(`<!-- ${marker} -->`);
  assert.ok(start >= 0, `docs/protocol.md has no <!-- ${marker} --> block`);
  const open = doc.indexOf('```', start);
  const body = doc.indexOf('\n', open) + 1;
  return doc.slice(body, doc.indexOf('```', body));
}

void test('the worked example in docs/protocol.md is what the encoder produces', () => {
  const doc = readFileSync(DOC, 'utf8');
  const key = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
  const nonce = Buffer.from('a0a1a2a3a4a5a6a7a8a9aaabacadaeaf', 'hex');
  const header = encodeHeader({ host: 'example.com', port: 443 }, new HeaderAuth(key), Date.UTC(2026, 0, 1), undefined, nonce);

  const derived = Buffer.from(hkdfSync('sha256', key, 'tcpsplit', 'tcpsplit v1 relay header', 32));
  assert.equal(docBlock(doc, 'example:header-key').replace(/\s+/g, ''), derived.toString('hex'));
  assert.equal(docBlock(doc, 'example:header').replace(/\s+/g, ''), header.toString('hex'));

  // Every row of the field-by-field breakdown: `| offset | hex | field |`.
  const rows = docBlock(doc, 'example:fields').split('\n').filter((l) => /^\s*\d+\s+/.test(l));
  let covered = 0;
  for (const row of rows) {
    const [offset = '', hex = ''] = row.trim().split(/\s+/);
    const at = Number(offset);
    assert.equal(at, covered, `row for offset ${offset} leaves a gap`);
    assert.equal(hex, header.subarray(at, at + hex.length / 2).toString('hex'), `offset ${offset}`);
    covered += hex.length / 2;
  }
  assert.equal(covered, header.length);

  const out = feed(newDecoder(), header);
  assert.equal(out.kind, 'header');
  assert.deepEqual(out.header.target, { host: 'example.com', port: 443 });
});
