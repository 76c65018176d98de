import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatIp, parseIp } from '../src/net/ip-address.js';
import { Cidr } from '../src/net/cidr.js';
import { ConfigError } from '../src/errors.js';

void test('parseIp normalizes literals; IPv4-mapped IPv6 becomes IPv4', () => {
  const cases: [string, string | undefined, 4 | 6 | undefined][] = [
    ['127.0.0.1', '127.0.0.1', 4],
    ['255.255.255.255', '255.255.255.255', 4],
    ['::ffff:127.0.0.1', '127.0.0.1', 4],
    ['::ffff:7f00:1', '127.0.0.1', 4],
    ['::FFFF:169.254.169.254', '169.254.169.254', 4],
    ['0:0:0:0:0:ffff:a9fe:a9fe', '169.254.169.254', 4],
    ['::1', '::1', 6],
    ['::', '::', 6],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1', 6],
    ['1:0:0:1:0:0:0:1', '1:0:0:1::1', 6],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8', 6],
    ['fe80::1%eth0', 'fe80::1', 6],
    ['::127.0.0.1', '::7f00:1', 6], // IPv4-compatible, not mapped: stays IPv6
    ['64:ff9b::1.2.3.4', '64:ff9b::102:304', 6],
    ['127.1', undefined, undefined],
    ['0x7f.0.0.1', undefined, undefined],
    ['256.0.0.1', undefined, undefined],
    ['example.com', undefined, undefined],
    ['[::1]', undefined, undefined],
    ['', undefined, undefined],
    ['1.2.3.4%eth0', undefined, undefined],
  ];
  for (const [text, formatted, family] of cases) {
    const ip = parseIp(text);
    assert.equal(ip?.family, family, text);
    assert.equal(ip === undefined ? undefined : formatIp(ip), formatted, text);
  }
});

void test('Cidr.parse: good forms normalize', () => {
  const cases: [string, string][] = [
    ['198.18.0.0/15', '198.18.0.0/15'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['10.1.2.3', '10.1.2.3/32'],
    ['::1/128', '::1/128'],
    ['::1', '::1/128'],
    ['::/0', '::/0'],
    ['2001:DB8::/32', '2001:db8::/32'],
    ['::ffff:10.0.0.0/104', '10.0.0.0/8'],
    ['::ffff:127.0.0.1', '127.0.0.1/32'],
    ['::ffff:0:0/96', '0.0.0.0/0'],
  ];
  for (const [text, expected] of cases) assert.equal(Cidr.parse(text).toString(), expected, text);
});

void test('Cidr.parse: bad forms throw ConfigError naming the input', () => {
  const cases: [string, RegExp][] = [
    ['10.0.0.5/8', /host bits set: did you mean 10\.0\.0\.0\/8/],
    ['2001:db8::1/32', /did you mean 2001:db8::\/32/],
    ['10.0.0.0/33', /bad prefix length/],
    ['::/129', /bad prefix length/],
    ['10.0.0.0/', /bad prefix length/],
    ['10.0.0.0/-1', /bad prefix length/],
    ['10.0.0.0/8/8', /bad prefix length/],
    ['10.0.0.0/+8', /bad prefix length/],
    ['::ffff:0:0/80', /at least \/96/],
    ['fe80::%eth0/10', /not a CIDR/],
    ['example.com/8', /not a CIDR/],
    ['', /not a CIDR/],
    ['127.1/8', /not a CIDR/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => Cidr.parse(text), (err: unknown) => err instanceof ConfigError && message.test(err.message), text);
  }
});

void test('Cidr.contains checks family and prefix; mapped addresses match IPv4 prefixes', () => {
  const net = Cidr.parse('127.0.0.0/8');
  assert.equal(net.contains('127.255.255.255'), true);
  assert.equal(net.contains('::ffff:127.0.0.1'), true);
  assert.equal(net.contains('128.0.0.0'), false);
  assert.equal(net.contains('::1'), false);
  assert.equal(net.contains('not-an-ip'), false);
  assert.equal(Cidr.parse('::/0').contains('::ffff:1.2.3.4'), false);
  assert.equal(Cidr.parse('::/0').contains('2001:db8::1'), true);
  assert.equal(Cidr.parse('0.0.0.0/0').contains('::ffff:1.2.3.4'), true);
  assert.equal(Cidr.parse('fe80::/10').contains('febf:ffff::1'), true);
  assert.equal(Cidr.parse('fe80::/10').contains('fec0::1'), false);
});
