import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressPolicy, localAddresses, type AddressPolicyOptions } from '../src/net/address-policy.js';
import { ConfigError } from '../src/errors.js';

interface Case {
  readonly name: string;
  readonly options: AddressPolicyOptions;
  readonly checks: readonly (readonly [ip: string, allowed: boolean, rule: RegExp])[];
}

const cases: readonly Case[] = [
  {
    name: 'built-in denies',
    options: { ownAddresses: [] },
    checks: [
      ['127.0.0.1', false, /^deny 127\.0\.0\.0\/8 \(built-in: loopback\)$/],
      ['127.255.0.9', false, /loopback/],
      ['::1', false, /loopback/],
      ['::ffff:127.0.0.1', false, /loopback/],
      ['::ffff:7f00:1', false, /loopback/],
      ['169.254.169.254', false, /link-local/],
      ['::ffff:169.254.169.254', false, /link-local/],
      ['fe80::1', false, /link-local/],
      ['fe80::1%eth0', false, /link-local/],
      ['fd00:ec2::254', false, /cloud metadata/],
      ['100.100.100.200', false, /cloud metadata/],
      ['0.0.0.0', false, /unspecified/],
      ['::', false, /unspecified/],
      ['::ffff:0.0.0.0', false, /unspecified/],
      ['224.0.0.1', false, /multicast/],
      ['ff02::1', false, /multicast/],
      ['255.255.255.255', false, /broadcast/],
      ['8.8.8.8', true, /^default allow/],
      ['10.1.2.3', true, /^default allow/],
      ['2001:db8::1', true, /^default allow/],
      ['localhost', false, /not an IP address/],
      ['127.1', false, /not an IP address/],
      ['', false, /not an IP address/],
    ],
  },
  {
    name: 'own addresses are denied as host prefixes',
    options: { ownAddresses: ['10.0.0.5', '2001:db8::5', 'fe80::1%eth0'] },
    checks: [
      ['10.0.0.5', false, /^deny 10\.0\.0\.5\/32 \(built-in: own address\)$/],
      ['::ffff:10.0.0.5', false, /own address/],
      ['10.0.0.6', true, /default allow/],
      ['2001:db8::5', false, /own address/],
    ],
  },
  {
    name: '--allow 127.0.0.1/32 opens one loopback address (beats the /8 and the own-address /32)',
    options: { allow: ['127.0.0.1/32'], ownAddresses: ['127.0.0.1'] },
    checks: [
      ['127.0.0.1', true, /^allow 127\.0\.0\.1\/32 \(--allow\)$/],
      ['::ffff:127.0.0.1', true, /--allow/],
      ['127.0.0.2', false, /loopback/],
      ['8.8.8.8', false, /^default deny/],
    ],
  },
  {
    name: '--allow 127.0.0.0/8 overrides the built-in /8 at equal length',
    options: { allow: ['127.0.0.0/8'], ownAddresses: [] },
    checks: [['127.9.9.9', true, /--allow/]],
  },
  {
    name: 'an --allow shorter than a built-in deny does not open it',
    options: { allow: ['0.0.0.0/0', '::/0'], ownAddresses: ['10.0.0.5'] },
    checks: [
      ['8.8.8.8', true, /allow 0\.0\.0\.0\/0/],
      ['127.0.0.1', false, /loopback/],
      ['169.254.169.254', false, /link-local/],
      ['10.0.0.5', false, /own address/],
      ['2001:db8::1', true, /allow ::\/0/],
    ],
  },
  {
    name: 'allow-list mode',
    options: { allow: ['10.0.0.0/8', '2001:db8::/32'], ownAddresses: [] },
    checks: [
      ['10.200.0.1', true, /allow 10\.0\.0\.0\/8/],
      ['11.0.0.1', false, /default deny \(--allow rules make an allow-list\)/],
      ['2001:db8::1', true, /allow 2001:db8::\/32/],
      ['2001:db9::1', false, /default deny/],
    ],
  },
  {
    name: 'deny beats allow at equal length, longer prefix beats both',
    options: { allow: ['10.0.0.0/8', '10.1.0.0/16', '10.2.2.0/24'], deny: ['10.1.0.0/16', '10.2.0.0/16'], ownAddresses: [] },
    checks: [
      ['10.1.0.1', false, /^deny 10\.1\.0\.0\/16 \(--deny\)$/],
      ['10.2.1.1', false, /deny 10\.2\.0\.0\/16/],
      ['10.2.2.1', true, /allow 10\.2\.2\.0\/24/],
      ['10.3.0.1', true, /allow 10\.0\.0\.0\/8/],
    ],
  },
  {
    name: '--deny alone keeps default allow',
    options: { deny: ['192.168.0.0/16', '::ffff:172.16.0.0/108'], ownAddresses: [] },
    checks: [
      ['192.168.1.1', false, /--deny/],
      ['172.17.0.1', false, /deny 172\.16\.0\.0\/12 \(--deny\)/],
      ['8.8.8.8', true, /default allow/],
    ],
  },
];

for (const c of cases) {
  void test(`policy: ${c.name}`, () => {
    const policy = new AddressPolicy(c.options);
    for (const [ip, allowed, rule] of c.checks) {
      const decision = policy.check(ip);
      assert.equal(decision.allowed, allowed, `${ip}: ${decision.rule}`);
      assert.match(decision.rule, rule, ip);
    }
  });
}

void test('policy: by default this host\'s own addresses are denied', () => {
  const policy = new AddressPolicy();
  const own = localAddresses();
  assert.ok(own.length > 0);
  for (const address of own) assert.equal(policy.check(address).allowed, false, address);
});

void test('policy: bad rules throw ConfigError naming the option', () => {
  assert.throws(() => new AddressPolicy({ allow: ['10.0.0.1/8'] }), (e: unknown) => e instanceof ConfigError && /^--allow .*did you mean 10\.0\.0\.0\/8/.test(e.message));
  assert.throws(() => new AddressPolicy({ deny: ['nope'] }), (e: unknown) => e instanceof ConfigError && /^--deny 'nope'/.test(e.message));
  assert.throws(() => new AddressPolicy({ ownAddresses: ['nope'] }), ConfigError);
});
