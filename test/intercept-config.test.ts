/**
 * --intercept without a kernel: option parsing and validation, the nftables script,
 * sockaddr decoding, the capability check. No root needed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRelayArgs } from '../src/config/parse-args.js';
import { buildRelayConfig } from '../src/config/load-config.js';
import { parseConfigText } from '../src/config/config-file.js';
import { parseInterceptRule } from '../src/intercept/intercept-spec.js';
import { renderRemoval, renderRuleset, tproxyIds } from '../src/intercept/nft-rules.js';
import { decodeSockaddr, hasEffectiveCapability, CAP_NET_ADMIN, isIpv4Peer, unmapIpv4 } from '../src/sys/index.js';
import { ConfigError } from '../src/errors.js';

const rules: readonly (readonly [string, ReturnType<typeof parseInterceptRule>])[] = [
  ['198.18.3.0/24', { cidr: '198.18.3.0/24', family: 4, ports: undefined }],
  ['198.18.3.2/32:22', { cidr: '198.18.3.2/32', family: 4, ports: { first: 22, last: 22 } }],
  ['10.0.0.0/8:80-443', { cidr: '10.0.0.0/8', family: 4, ports: { first: 80, last: 443 } }],
  ['fd00:7473:3::/64', { cidr: 'fd00:7473:3::/64', family: 6, ports: undefined }],
  ['fd00:7473:3::/64:22', { cidr: 'fd00:7473:3::/64', family: 6, ports: { first: 22, last: 22 } }],
  ['[fd00:7473:3::/64]:1000-2000', { cidr: 'fd00:7473:3::/64', family: 6, ports: { first: 1000, last: 2000 } }],
];
for (const [text, want] of rules) {
  void test(`--intercept ${text} parses`, () => { assert.deepEqual(parseInterceptRule(text), want); });
}

const bad: readonly (readonly [readonly string[], RegExp])[] = [
  [['--intercept', '198.18.3.2'], /no prefix length/],
  [['--intercept', '198.18.3.0/24:0'], /not within 1\.\.65535/],
  [['--intercept', '198.18.3.0/24:90-80'], /low to high/],
  [['--intercept', '198.18.3.0/24:http'], /not PORT or PORT-PORT/],
  [['--intercept', '198.18.3.1/24'], /host bits/],
  [['--intercept', '0.0.0.0/0', '--intercept-mode', 'nat'], /--intercept-mode 'nat': unknown mode; expected redirect\|tproxy/],
  [['--intercept', '0.0.0.0/0', '--intercept-iface', 'eth0"; flush ruleset'], /not an interface name/],
  [['--intercept', '0.0.0.0/0', '--intercept-listen', '0'], /needs a fixed port/],
  [['--intercept', '0.0.0.0/0', '--instance', 'Bad-Name'], /not 1\.\.32 of \[a-z0-9_\]/],
];
for (const [argv, message] of bad) {
  void test(`relay ${argv.join(' ')} is refused`, () => {
    assert.throws(() => parseRelayArgs(argv), (err: unknown) => err instanceof ConfigError && message.test(err.message));
  });
}

void test('--intercept alone is a config; companions without it are refused; defaults', async () => {
  const { config } = await buildRelayConfig(parseRelayArgs(['--intercept', '198.18.3.0/24', '--intercept', 'fd00::/8:22']), {});
  assert.deepEqual(config.intercept, {
    rules: [parseInterceptRule('198.18.3.0/24'), parseInterceptRule('fd00::/8:22')],
    mode: 'redirect', iface: undefined, listen: { host: '::', port: 7080 }, instance: 'p7080',
  });
  await assert.rejects(buildRelayConfig(parseRelayArgs(['-L', '1:a.example:2', '--intercept-mode', 'tproxy']), {}),
    /--intercept-mode without --intercept/);
  await assert.rejects(buildRelayConfig(parseRelayArgs(['--intercept', '0.0.0.0/0', '--intercept-listen', '7000', '--accept', '[::]:7000', '--insecure']), {}),
    /--accept and --intercept-listen both listen on \[::\]:7000/);
});

void test('YAML intercept: a list, with mode, iface and instance', async () => {
  const o = await parseConfigText('intercept: ["198.18.3.0/24:80", "fd00:7473:3::/64"]\nintercept-mode: tproxy\nintercept-iface: client\ninstance: rc1\n', 'rc.yaml');
  const { config } = await buildRelayConfig(o, {});
  assert.equal(config.intercept?.mode, 'tproxy');
  assert.equal(config.intercept.iface, 'client');
  assert.equal(config.intercept.instance, 'rc1');
  assert.equal(config.intercept.rules.length, 2);
});

void test('the nftables script: own table replaced in one transaction, prerouting only, local destinations left alone', async () => {
  const { config } = await buildRelayConfig(parseRelayArgs(['--intercept', '198.18.3.0/24', '--intercept', 'fd00:7473:3::/64:22',
    '--intercept-iface', 'client', '--instance', 'rc']), {});
  const icpt = config.intercept;
  assert.ok(icpt !== undefined);
  assert.equal(renderRuleset(icpt, { port: 7080, newFlows: true }), [
    'table inet tcpsplit_rc', 'delete table inet tcpsplit_rc', 'table inet tcpsplit_rc {', '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    '    fib daddr type local return',
    '    iifname "client" meta l4proto tcp ip daddr 198.18.3.0/24 redirect to :7080',
    '    iifname "client" ip6 daddr fd00:7473:3::/64 tcp dport 22 redirect to :7080',
    '  }', '}', ''].join('\n'));
  assert.doesNotMatch(renderRuleset(icpt, { port: 7080, newFlows: false }), /redirect/);
  const tproxy = { ...icpt, mode: 'tproxy' as const };
  const mark = `0x${tproxyIds('rc').mark.toString(16)}`;
  const text = renderRuleset(tproxy, { port: 7080, newFlows: true });
  assert.match(text, /type filter hook prerouting priority mangle/);
  assert.ok(text.includes(`meta l4proto tcp socket transparent 1 meta mark set ${mark} accept`));
  assert.ok(text.includes(`iifname "client" meta l4proto tcp ip daddr 198.18.3.0/24 tproxy ip to :7080 meta mark set ${mark} accept`));
  assert.ok(text.includes(`ip6 daddr fd00:7473:3::/64 tcp dport 22 tproxy ip6 to :7080 meta mark set ${mark} accept`));
  // Draining keeps delivering accepted flows, diverts no new one.
  const draining = renderRuleset(tproxy, { port: 7080, newFlows: false });
  assert.match(draining, /socket transparent 1/);
  assert.doesNotMatch(draining, /tproxy ip/);
  assert.equal(renderRemoval('rc'), 'table inet tcpsplit_rc\ndelete table inet tcpsplit_rc\n');
  assert.doesNotMatch(text + draining, /hook output|flush ruleset|table ip |table ip6 /);
  assert.notEqual(tproxyIds('rc').table, tproxyIds('rs').table);
});

void test('sockaddr decoding: IPv4, IPv6, v4-mapped; peer families', () => {
  const v4 = Buffer.alloc(16);
  v4.writeUInt16LE(2, 0); v4.writeUInt16BE(80, 2); Buffer.from([198, 18, 3, 2]).copy(v4, 4);
  assert.deepEqual(decodeSockaddr(v4), { host: '198.18.3.2', port: 80 });
  const v6 = Buffer.alloc(28);
  v6.writeUInt16LE(10, 0); v6.writeUInt16BE(22, 2); Buffer.from('fd007473000300000000000000000000', 'hex').copy(v6, 8);
  v6.writeUInt16BE(2, 22);
  assert.deepEqual(decodeSockaddr(v6), { host: 'fd00:7473:3::2', port: 22 });
  const mapped = Buffer.alloc(28);
  mapped.writeUInt16LE(10, 0); mapped.writeUInt16BE(443, 2); Buffer.from('00000000000000000000ffffc6120302', 'hex').copy(mapped, 8);
  assert.deepEqual(decodeSockaddr(mapped), { host: '198.18.3.2', port: 443 });
  assert.equal(isIpv4Peer('198.18.1.1'), true);
  assert.equal(isIpv4Peer('::ffff:198.18.1.1'), true);
  assert.equal(isIpv4Peer('fd00:7473:1::1'), false);
  assert.equal(unmapIpv4('::ffff:1.2.3.4'), '1.2.3.4');
});

void test('CAP_NET_ADMIN is read from CapEff', () => {
  assert.equal(hasEffectiveCapability(CAP_NET_ADMIN, 'Name:\tx\nCapEff:\t000001ffffffffff\n'), true);
  assert.equal(hasEffectiveCapability(CAP_NET_ADMIN, 'CapEff:\t000001fffeffefff\n'), false);
  assert.equal(hasEffectiveCapability(CAP_NET_ADMIN, 'no such line'), undefined);
});
