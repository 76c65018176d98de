import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRelayArgs } from '../src/config/parse-args.js';
import type { RelayOptions } from '../src/config/relay-options.js';
import { ConfigError } from '../src/errors.js';

type Good = readonly [argv: readonly string[], expected: Partial<RelayOptions>];

const good: readonly Good[] = [
  [['-L', '8080:example.com:80'], { forwards: [{ listen: { host: '127.0.0.1', port: 8080 }, target: { host: 'example.com', port: 80 } }] }],
  [['-L8080:10.0.0.1:80'], { forwards: [{ listen: { host: '127.0.0.1', port: 8080 }, target: { host: '10.0.0.1', port: 80 } }] }],
  [['-L=8080:10.0.0.1:80'], { forwards: [{ listen: { host: '127.0.0.1', port: 8080 }, target: { host: '10.0.0.1', port: 80 } }] }],
  [['--forward=0.0.0.0:0:h:1'], { forwards: [{ listen: { host: '0.0.0.0', port: 0 }, target: { host: 'h', port: 1 } }] }],
  [['-L', '[::1]:8080:[2001:db8::1]:80'], { forwards: [{ listen: { host: '::1', port: 8080 }, target: { host: '2001:db8::1', port: 80 } }] }],
  [['-L', 'localhost:65535:my_host.example.:443'], { forwards: [{ listen: { host: 'localhost', port: 65535 }, target: { host: 'my_host.example.', port: 443 } }] }],
  [['-L', '1:a:1', '-L', '2:b:2'], { forwards: [
    { listen: { host: '127.0.0.1', port: 1 }, target: { host: 'a', port: 1 } },
    { listen: { host: '127.0.0.1', port: 2 }, target: { host: 'b', port: 2 } },
  ] }],
  [['--peer', 'rs=198.18.2.2:7000'], { peers: [{ name: 'rs', endpoint: { host: '198.18.2.2', port: 7000 } }] }],
  [['--peer=r_s-2=[2001:db8::2]:7000'], { peers: [{ name: 'r_s-2', endpoint: { host: '2001:db8::2', port: 7000 } }] }],
  [['--route', '198.18.0.0/15=rs'], { routes: [{ cidr: '198.18.0.0/15', via: 'rs' }] }],
  [['--route=2001:DB8::/32=direct'], { routes: [{ cidr: '2001:db8::/32', via: 'direct' }] }],
  [['--route', '::ffff:10.0.0.0/104=rs'], { routes: [{ cidr: '10.0.0.0/8', via: 'rs' }] }],
  [['--accept', '7000'], { accept: { host: '0.0.0.0', port: 7000 } }],
  [['--accept', '[::]:0'], { accept: { host: '::', port: 0 } }],
  [['--accept=127.0.0.1:7000'], { accept: { host: '127.0.0.1', port: 7000 } }],
  [['--metrics', '9100'], { metrics: { host: '127.0.0.1', port: 9100 } }],
  [['--metrics', '0.0.0.0:9100'], { metrics: { host: '0.0.0.0', port: 9100 } }],
  [['--key-file', 'relay.key'], { keyFile: 'relay.key' }],
  [['--insecure'], { insecure: true }],
  [['--allow', '10.0.0.0/8', '--allow=::1/128', '--deny', '10.1.0.0/16'], { allow: ['10.0.0.0/8', '::1/128'], deny: ['10.1.0.0/16'] }],
  [['--max-connections', '1000000'], { maxConnections: 1_000_000 }],
  [['--connect-timeout', '500ms'], { connectTimeoutMs: 500 }],
  [['--connect-timeout=1.5s'], { connectTimeoutMs: 1500 }],
  [['--idle-timeout', '5m'], { idleTimeoutMs: 300_000 }],
  [['--idle-timeout', '0'], { idleTimeoutMs: 0 }],
  [['--header-timeout', '250ms'], { headerTimeoutMs: 250 }],
  [['--drain-timeout', '1h'], { drainTimeoutMs: 3_600_000 }],
  [['--keepalive', '0s'], { keepaliveMs: 0 }],
  [['--max-clock-skew', '30s'], { maxClockSkewMs: 30_000 }],
  [['--log-level', 'debug'], { logLevel: 'debug' }],
  [['--config', 'relay.yaml'], { configFile: 'relay.yaml' }],
  [['--accept', '1', '--accept', '2'], { accept: { host: '0.0.0.0', port: 2 } }],
  [['-h'], { help: true }],
  [['--help', '--bogus'], { help: true }],
];

for (const [argv, expected] of good) {
  void test(`parseRelayArgs accepts ${argv.join(' ')}`, () => {
    const options = parseRelayArgs(argv);
    const want: RelayOptions = { forwards: [], peers: [], routes: [], allow: [], deny: [], intercepts: [], ...expected };
    assert.deepEqual(options, want);
  });
}

type Bad = readonly [argv: readonly string[], message: RegExp];

const bad: readonly Bad[] = [
  [['-L', '80:x'], /^-L '80:x': wrong number of fields; expected \[bind:\]port:host:hostport$/],
  [['-L', 'a:b:c:d:e'], /-L 'a:b:c:d:e'.*expected \[bind:\]port:host:hostport/],
  [['-L', '80:x:0'], /port '0' is not in 1\.\.65535/],
  [['-L', '65536:x:80'], /port '65536' is not in 0\.\.65535/],
  [['-L', '80:x:http'], /port 'http'/],
  [['-L', '::1:80:x:80'], /-L '::1:80:x:80'/],
  [['-L', '[::1:80:x:80'], /'\[' without '\]'/],
  [['-L', '[10.0.0.1]:80:x:80'], /is not an IPv6 address/],
  [['-L', '[::1]x:80:x:80'], /expected ':' after '\]'/],
  [['-L', '80:127.1:80'], /'127\.1' is not an IPv4 address/],
  [['-L', '80:bad host:80'], /'bad host' is not/],
  [['-L', '80:-x:80'], /'-x' is not/],
  [['-L', ':80:x:80'], /empty host/],
  [['-L'], /^-L needs a value: expected \[bind:\]port:host:hostport$/],
  [['-L', '--insecure'], /-L needs a value/],
  [['--peer', 'rs'], /--peer 'rs': no '='; expected NAME=HOST:PORT/],
  [['--peer', 'RS=1.2.3.4:7000'], /peer name 'RS'/],
  [['--peer', '=1.2.3.4:7000'], /peer name ''/],
  [['--peer', 'direct=1.2.3.4:7000'], /'direct' is reserved/],
  [['--peer', 'rs=1.2.3.4'], /--peer 'rs=1\.2\.3\.4'.*expected NAME=HOST:PORT/],
  [['--peer', 'rs=1.2.3.4:0'], /port '0'/],
  [['--route', '10.0.0.0/8'], /--route '10\.0\.0\.0\/8': no '='; expected CIDR=NAME or CIDR=direct/],
  [['--route', '10.0.0.1/8=rs'], /did you mean 10\.0\.0\.0\/8/],
  [['--route', '10.0.0.0/8=Bad'], /'Bad' is not a peer name/],
  [['--route', 'x=rs'], /not a CIDR/],
  [['--accept', 'x'], /--accept 'x'.*expected \[bind:\]port/],
  [['--accept', '1.2.3.4:7000:1'], /wrong number of fields/],
  [['--accept'], /--accept needs a value/],
  [['--metrics', '70000'], /--metrics '70000'/],
  [['--key-file='], /--key-file '': empty file name/],
  [['--insecure=yes'], /^--insecure takes no value$/],
  [['--allow', '10.0.0.0/33'], /--allow '10\.0\.0\.0\/33'.*bad prefix length/],
  [['--deny', 'example.com'], /--deny 'example\.com'.*not a CIDR/],
  [['--allow', '10.20.0.0'], /^--allow '10\.20\.0\.0': no prefix length: write 10\.20\.0\.0\/32 for this one address/],
  [['--deny', '::1'], /no prefix length: write ::1\/128/],
  [['--route', '198.18.0.0=rs'], /no prefix length/],
  [['--allow', '10.0.0.0/8,10.1.0.0/16'], /^--allow '10\.0\.0\.0\/8,10\.1\.0\.0\/16': one CIDR per value: repeat the option/],
  [['--deny', '10.0.0.0/8 10.1.0.0/16'], /one CIDR per value/],
  [['--max-connections', 'lots'], /^--max-connections 'lots': not a whole number; expected a whole number from 1 to 1000000$/],
  [['--max-connections', '0'], /^--max-connections '0': out of range/],
  [['--max-connections', '1000001'], /out of range/],
  [['--connect-timeout', '0'], /--connect-timeout '0': must be more than 0/],
  [['--header-timeout', '250'], /--header-timeout '250': no unit: did you mean 250s or 250ms\?/],
  [['--connect-timeout', '10 s'], /not a duration; expected a duration like 500ms/],
  [['--connect-timeout', '-5s'], /--connect-timeout needs a value/],
  [['--idle-timeout', '10d'], /not a duration/],
  [['--header-timeout', '0.5ms'], /whole number of milliseconds/],
  [['--drain-timeout', '30d'], /not a duration/],
  [['--keepalive', '600h'], /longer than 2147483647ms/],
  [['--max-clock-skew', 's'], /not a duration/],
  [['--log-level', 'verbose'], /--log-level 'verbose': unknown level; expected fatal\|error/],
  [['--config'], /--config needs a value/],
  [['--bogus'], /^unknown option '--bogus'/],
  [['--bogus=1'], /^unknown option '--bogus'/],
  [['-x'], /^unknown option '-x'/],
  [['relay.yaml'], /^unexpected argument 'relay\.yaml'/],
  [['-'], /^unexpected argument '-'/],
];

for (const [argv, message] of bad) {
  void test(`parseRelayArgs refuses ${argv.join(' ')}`, () => {
    assert.throws(() => parseRelayArgs(argv), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.match(err.message, message);
      return true;
    });
  });
}
