import { test } from 'node:test';
import assert from 'node:assert/strict';
import { foldAddress, steer, steerHash } from '../src/net/steer.js';
import { seededRandom as prng } from '../src/lab/emulator/shaper.js';

/** The same hash in BigInt arithmetic, written independently of Math.imul and >>>. */
function referenceSteer(saddr32: bigint, sport: bigint, workers: bigint): bigint {
  const x = (saddr32 ^ sport) & 0xffff_ffffn;
  return (((x * 0x9e3779b1n) & 0xffff_ffffn) >> 16n) % workers;
}


/** Pearson's chi-square of the counts against a uniform spread. */
function chiSquare(counts: readonly number[]): number {
  const total = counts.reduce((a, b) => a + b, 0);
  const expected = total / counts.length;
  return counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
}

// Upper 0.1% points of chi-square: a fair hash exceeds them once in a thousand samples.
const CHI2_999: Record<number, number> = { 1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 7: 24.32, 15: 37.70 };

function ipv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join('.');
}

test('steer: the same tuple always gives the same worker, and matches a BigInt reference', () => {
  const rand = prng(1);
  for (let i = 0; i < 5000; i++) {
    const addr = Math.floor(rand() * 2 ** 32);
    const port = Math.floor(rand() * 65536);
    const workers = 1 + Math.floor(rand() * 64);
    const got = steer({ address: ipv4(addr), port }, workers);
    assert.equal(got, steer({ address: ipv4(addr), port }, workers));
    assert.equal(BigInt(got), referenceSteer(BigInt(addr), BigInt(port), BigInt(workers)), `${ipv4(addr)}:${port} over ${workers}`);
  }
  assert.equal(steer({ address: '10.0.0.1', port: 40000 }, 1), 0);
});

test('steer: even source ports from many addresses spread evenly (chi-square below the 0.1% point)', (t) => {
  const rand = prng(2);
  for (const workers of [2, 3, 4, 8, 16]) {
    const counts = new Array<number>(workers).fill(0);
    for (let i = 0; i < 20_000; i++) {
      const addr = (10 << 24) | Math.floor(rand() * 2 ** 24);
      const port = 32768 + 2 * Math.floor(rand() * 14116); // Linux picks even ports for connect()
      const w = steer({ address: ipv4(addr >>> 0), port }, workers);
      counts[w] = (counts[w] ?? 0) + 1;
    }
    const chi2 = chiSquare(counts);
    t.diagnostic(`many addresses, ${workers} workers: counts ${counts.join(' ')}, chi2 ${chi2.toFixed(2)} (df ${workers - 1}, bound ${CHI2_999[workers - 1]})`);
    assert.ok(chi2 < (CHI2_999[workers - 1] ?? 0), `chi2 ${chi2} with ${workers} workers: ${counts.join(' ')}`);
  }
});

test('steer: one client address, every even ephemeral port, spreads evenly; sport & 1 would not', (t) => {
  for (const workers of [2, 3, 4, 8]) {
    const counts = new Array<number>(workers).fill(0);
    const naive = new Array<number>(workers).fill(0);
    for (let port = 32768; port < 61000; port += 2) {
      const w = steer({ address: '127.0.0.1', port }, workers);
      counts[w] = (counts[w] ?? 0) + 1;
      const n = (port & 1) % workers;
      naive[n] = (naive[n] ?? 0) + 1;
    }
    const chi2 = chiSquare(counts);
    t.diagnostic(`127.0.0.1, ${workers} workers: counts ${counts.join(' ')}, chi2 ${chi2.toFixed(2)}`);
    assert.ok(chi2 < (CHI2_999[workers - 1] ?? 0), `chi2 ${chi2} with ${workers} workers: ${counts.join(' ')}`);
    assert.ok(chiSquare(naive) > (CHI2_999[workers - 1] ?? 0), 'the check would catch a function of sport & 1');
  }
});

test('steer: IPv6 folds the four 32-bit words by xor; spreads evenly over random addresses', (t) => {
  assert.equal(foldAddress('::1'), 1);
  assert.equal(foldAddress('2001:db8::1'), (0x20010db8 ^ 1) >>> 0);
  assert.equal(foldAddress('1:2:3:4:5:6:7:8'), (0x00010002 ^ 0x00030004 ^ 0x00050006 ^ 0x00070008) >>> 0);
  assert.equal(foldAddress('ffff:ffff::'), 0xffffffff);
  const rand = prng(3);
  const workers = 4;
  const counts = new Array<number>(workers).fill(0);
  for (let i = 0; i < 20_000; i++) {
    const words = [0x20010db8, Math.floor(rand() * 2 ** 32), Math.floor(rand() * 2 ** 32), Math.floor(rand() * 2 ** 32)];
    const text = words.map((w) => `${(w >>> 16).toString(16)}:${(w & 0xffff).toString(16)}`).join(':');
    const port = 32768 + 2 * Math.floor(rand() * 14116);
    const w = steer({ address: text, port }, workers);
    const fold = BigInt(words.reduce((a, b) => (a ^ b) >>> 0, 0));
    assert.equal(BigInt(w), referenceSteer(fold, BigInt(port), BigInt(workers)));
    counts[w] = (counts[w] ?? 0) + 1;
  }
  const chi2 = chiSquare(counts);
  t.diagnostic(`IPv6, ${workers} workers: counts ${counts.join(' ')}, chi2 ${chi2.toFixed(2)}`);
  assert.ok(chi2 < (CHI2_999[workers - 1] ?? 0), `chi2 ${chi2}: ${counts.join(' ')}`);
});

test('steer: an IPv4-mapped IPv6 address steers as its IPv4 address', () => {
  const rand = prng(4);
  for (let i = 0; i < 2000; i++) {
    const addr = Math.floor(rand() * 2 ** 32);
    const port = Math.floor(rand() * 65536);
    const hex = `::ffff:${(addr >>> 16).toString(16)}:${(addr & 0xffff).toString(16)}`;
    for (const workers of [2, 3, 7]) {
      const v4 = steer({ address: ipv4(addr), port }, workers);
      assert.equal(steer({ address: `::ffff:${ipv4(addr)}`, port }, workers), v4);
      assert.equal(steer({ address: hex, port }, workers), v4);
    }
  }
  assert.equal(steerHash(foldAddress('::ffff:127.0.0.1'), 40000), steerHash(0x7f000001, 40000));
});

test('steer: rejects what is not an address, a port or a worker count', () => {
  assert.throws(() => steer({ address: 'localhost', port: 1 }, 2), RangeError);
  assert.throws(() => steer({ address: '127.0.0.1', port: 65536 }, 2), RangeError);
  assert.throws(() => steer({ address: '127.0.0.1', port: 1.5 }, 2), RangeError);
  assert.throws(() => steer({ address: '127.0.0.1', port: 1 }, 0), RangeError);
  assert.throws(() => steer({ address: '127.0.0.1', port: 1 }, 65537), RangeError);
});
