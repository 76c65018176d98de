import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RouteTable } from '../src/net/route-table.js';
import { Cidr } from '../src/net/cidr.js';
import type { IpAddress } from '../src/net/ip-address.js';

void test('longest prefix wins, IPv4 and IPv6, with defaults', () => {
  const table = new RouteTable<string>();
  table.add('0.0.0.0/0', 'v4-default');
  table.add('10.0.0.0/8', 'ten');
  table.add('10.1.0.0/16', 'ten-one');
  table.add('10.1.2.3/32', 'host');
  table.add('::/0', 'v6-default');
  table.add('2001:db8::/32', 'doc');
  table.add('2001:db8:1::/48', 'doc-1');
  const cases: [string, string | undefined][] = [
    ['10.1.2.3', 'host'],
    ['10.1.2.4', 'ten-one'],
    ['10.2.0.1', 'ten'],
    ['11.0.0.1', 'v4-default'],
    ['::ffff:10.1.2.3', 'host'],
    ['2001:db8:1::5', 'doc-1'],
    ['2001:db8:2::5', 'doc'],
    ['2001:db9::1', 'v6-default'],
    ['example.com', undefined],
  ];
  for (const [ip, expected] of cases) assert.equal(table.lookup(ip), expected, ip);
  assert.equal(table.match('10.1.9.9')?.cidr.toString(), '10.1.0.0/16');
  assert.equal(table.size, 7);
});

void test('without a default, unmatched addresses give undefined; families do not mix', () => {
  const table = new RouteTable<number>();
  table.add('198.18.0.0/15', 1);
  assert.equal(table.lookup('198.19.255.255'), 1);
  assert.equal(table.lookup('198.20.0.0'), undefined);
  assert.equal(table.lookup('::c612:1'), undefined);
  assert.equal(table.lookup('::1'), undefined);
});

void test('add replaces the value for an identical prefix and returns the old one; get is exact', () => {
  const table = new RouteTable<string>();
  assert.equal(table.add('10.0.0.0/8', 'a'), undefined);
  assert.equal(table.add(Cidr.parse('10.0.0.0/8'), 'b'), 'a');
  assert.equal(table.size, 1);
  assert.equal(table.get('10.0.0.0/8'), 'b');
  assert.equal(table.get('10.0.0.0/9'), undefined);
  assert.deepEqual([...table.entries()].map((e) => e.value), ['b']);
});

// A brute-force reference: scan every prefix, keep the longest that contains the address.
function reference(routes: readonly [Cidr, number][], ip: IpAddress): number | undefined {
  let best: [Cidr, number] | undefined;
  for (const route of routes) {
    if (route[0].contains(ip) && (best === undefined || route[0].prefixLength >= best[0].prefixLength)) best = route;
  }
  return best?.[1];
}

// Few distinct high bits so that random prefixes and addresses overlap often.
const arbIp = (family: 4 | 6): fc.Arbitrary<IpAddress> => {
  const bits = family === 4 ? 32n : 128n;
  return fc.tuple(fc.integer({ min: 0, max: 7 }), fc.bigInt({ min: 0n, max: (1n << (bits - 3n)) - 1n }))
    .map(([high, low]) => ({ family, value: (BigInt(high) << (bits - 3n)) | low }));
};
const arbRoute = fc.constantFrom(4 as const, 6 as const).chain((family) =>
  fc.tuple(arbIp(family), fc.integer({ min: 0, max: family === 4 ? 32 : 128 })).map(([ip, len]) => Cidr.of(ip, len)));

void test('property: lookup agrees with a brute-force longest-prefix scan', () => {
  fc.assert(fc.property(
    fc.array(arbRoute, { maxLength: 40 }),
    fc.array(fc.oneof(arbIp(4), arbIp(6)), { minLength: 1, maxLength: 20 }),
    (cidrs, ips) => {
      const table = new RouteTable<number>();
      // Later adds replace earlier ones for the same prefix, as the reference's >= does.
      const routes = cidrs.map((cidr, i) => [cidr, i] as [Cidr, number]);
      for (const [cidr, value] of routes) table.add(cidr, value);
      for (const ip of ips) {
        const probes = [ip, ...routes.map(([cidr]) => ({ family: cidr.family, value: cidr.network }))];
        for (const probe of probes) assert.equal(table.lookup(probe), reference(routes, probe));
      }
    },
  ), { numRuns: 300 });
});
