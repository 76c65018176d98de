import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LabConfigError } from '../src/errors.js';
import { ADDRESS_PLAN, LINK_NAMES, LINK_PLAN, ROUTES } from '../src/lab/address-plan.js';
import { PROFILES, applyLinkFlag, scaleDelays, type LabProfile } from '../src/lab/link-config.js';
import { verifyPrefix } from '../src/lab/lab-state.js';
import { loadProfile, parseProfileText } from '../src/lab/profile-file.js';
import { parseBytes, parseDurationMs, parseFraction, parseRateBitsPerSec } from '../src/lab/units.js';

function paper(): LabProfile {
  return PROFILES.paper;
}

void test('units: good values parse with their unit', () => {
  const cases: [(s: string) => number, string, number][] = [
    [parseDurationMs, '107.5ms', 107.5], [parseDurationMs, '250us', 0.25], [parseDurationMs, '1.5s', 1500],
    [parseDurationMs, '0', 0], [parseDurationMs, ' 10 ms ', 10],
    [parseRateBitsPerSec, '100mbit', 100e6], [parseRateBitsPerSec, '1Gbit', 1e9], [parseRateBitsPerSec, '500kbit', 500e3],
    [parseRateBitsPerSec, 'unlimited', 0], [parseRateBitsPerSec, '0', 0],
    [parseBytes, '64kb', 64000], [parseBytes, '64kib', 65536], [parseBytes, '1500b', 1500],
    [parseFraction, '0.1%', 0.001], [parseFraction, '10%', 0.1], [parseFraction, '100%', 1],
  ];
  for (const [fn, text, want] of cases) assert.ok(Math.abs(fn(text) - want) < 1e-9, `${text} -> ${fn(text)}, want ${want}`);
});

void test('units: bare or unknown units are refused with the accepted units named', () => {
  const cases: [(s: string) => number, string, RegExp][] = [
    [parseDurationMs, '10', /units s, ms, us/], [parseDurationMs, '10min', /bad duration/], [parseDurationMs, '-5ms', /bad duration/],
    [parseRateBitsPerSec, '100', /units bit, kbit, mbit, gbit/], [parseRateBitsPerSec, '100mbps', /bad rate/],
    [parseBytes, '64', /bad size/], [parseFraction, '0.1', /e\.g\. 0\.1%/], [parseFraction, 'lots', /bad percentage/],
  ];
  for (const [fn, text, re] of cases) assert.throws(() => fn(text), (e: unknown) => e instanceof LabConfigError && re.test(e.message), text);
});

void test('profile paper: one-way delay is half the paper RTTs (section 4), both directions', () => {
  const p = paper();
  const rtt = { 'client-rc': 32.7, 'rc-rs': 215, 'rs-server': 26, internet: 273.7 } as const;
  for (const name of LINK_NAMES) {
    assert.equal(p[name].up.delayMs, rtt[name] / 2, name);
    assert.equal(p[name].down.delayMs, rtt[name] / 2, name);
    assert.equal(p[name].up.rateBitsPerSec, 0);
  }
  const path = p['client-rc'].up.delayMs + p['rc-rs'].up.delayMs + p['rs-server'].up.delayMs;
  assert.ok(Math.abs(2 * path - 273.7) < 1e-9, 'the rc/rs path has the e2e RTT');
});

void test('--link: settings apply per link and per direction', () => {
  let p = applyLinkFlag(paper(), 'rc-rs:delay=50ms,rate=100mbit,loss=0.1%,queue=256kb,jitter=2ms,burst=15kb');
  assert.deepEqual(p['rc-rs'].up, {
    delayMs: 50, jitterMs: 2, rateBitsPerSec: 100e6, burstBytes: 15000, queueLimit: { unit: 'bytes', value: 256000 }, lossRate: 0.001,
  });
  assert.deepEqual(p['rc-rs'].down, p['rc-rs'].up);
  assert.equal(p['client-rc'].up.delayMs, 16.35, 'other links untouched');
  p = applyLinkFlag(p, 'internet:rtt=10ms,down.rate=5mbit,up.queue=20p');
  assert.equal(p.internet.up.delayMs, 5);
  assert.equal(p.internet.down.delayMs, 5);
  assert.equal(p.internet.down.rateBitsPerSec, 5e6);
  assert.equal(p.internet.up.rateBitsPerSec, 0);
  assert.deepEqual(p.internet.up.queueLimit, { unit: 'packets', value: 20 });
  assert.deepEqual(p.internet.down.queueLimit, { unit: 'packets', value: 1000 });
});

void test('--link: errors say what is wrong and where', () => {
  const cases: [string, RegExp][] = [
    ['rc-rx:delay=1ms', /unknown link 'rc-rx' \(links: client-rc, rc-rs, rs-server, internet\)/],
    ['rc-rs', /no settings/],
    ['rc-rs:delay', /'delay' is not key=value/],
    ['rc-rs:speed=1mbit', /link rc-rs: unknown setting 'speed'/],
    ['rc-rs:delay=5', /link rc-rs: bad duration '5'/],
    ['rc-rs:loss=150%', /link rc-rs up: loss 150% \(0%\.\.100%\) is out of range/],
    ['rc-rs:rate=1kbit', /rate 1000bit\/s .* out of range/],
    ['rc-rs:delay=1ms,jitter=2ms', /jitter 2ms \(must be 0\.\.delay, 1ms\)/],
    ['rc-rs:delay=20s', /delay 20000ms \(0\.\.10000ms\) is out of range/],
    ['rc-rs:queue=0', /queue 0 packets/],
    ['rc-rs:up.rtt=10ms', /rtt covers both directions/],
    ['rc-rs:sideways.delay=1ms', /unknown setting 'sideways\.delay'/],
  ];
  for (const [flag, re] of cases) {
    assert.throws(() => applyLinkFlag(paper(), flag), (e: unknown) => e instanceof LabConfigError && re.test(e.message), flag);
  }
});

void test('profile files: YAML and JSON, base, per-direction blocks', () => {
  const y = parseProfileText(`
base: paper
links:
  rc-rs: { rate: 100mbit, queue: 500 }
  internet:
    rtt: 100ms
    down: { loss: 0.5% }
`, 'test.yaml');
  assert.equal(y['rc-rs'].up.delayMs, 107.5);
  assert.equal(y['rc-rs'].down.rateBitsPerSec, 100e6);
  assert.deepEqual(y['rc-rs'].up.queueLimit, { unit: 'packets', value: 500 });
  assert.equal(y.internet.up.delayMs, 50);
  assert.equal(y.internet.down.lossRate, 0.005);
  assert.equal(y.internet.up.lossRate, 0);
  const j = parseProfileText('{"links": {"client-rc": {"delay": "1ms"}}}', 'test.json');
  assert.equal(j['client-rc'].up.delayMs, 1);
  assert.equal(j['rc-rs'].up.delayMs, 0, 'no base: zero delays');
});

void test('profile files: errors name the file, the link and the key', () => {
  const cases: [string, RegExp][] = [
    ['links: [1, 2', /p\.yaml: not valid YAML\/JSON/],
    ['- a', /p\.yaml: expected a mapping/],
    ['linkz: {}', /unknown top-level key 'linkz'/],
    ['base: fast', /unknown profile 'fast' \(built-in: paper, none/],
    ['links: { wan: { delay: 1ms } }', /p\.yaml: unknown link 'wan'/],
    ['links: { rc-rs: 5 }', /link rc-rs: expected a mapping/],
    ['links: { rc-rs: { delay: 5 } }', /p\.yaml: link rc-rs: bad duration '5'/],
    ['links: { rc-rs: { delay: [1] } }', /link rc-rs delay: expected a value/],
    ['links: { rc-rs: { loss: 200% } }', /p\.yaml: link rc-rs up: loss/],
  ];
  for (const [text, re] of cases) {
    assert.throws(() => parseProfileText(text, 'p.yaml'), (e: unknown) => e instanceof LabConfigError && re.test(e.message), text);
  }
  assert.throws(() => loadProfile('/nonexistent/wan.yaml'), /cannot read profile file '\/nonexistent\/wan\.yaml'/);
  assert.throws(() => loadProfile('papr'), /unknown profile 'papr'/);
});

void test('scaleDelays multiplies delay and jitter, and validates the factor', () => {
  const p = scaleDelays(applyLinkFlag(paper(), 'rc-rs:jitter=10ms'), 0.1);
  assert.ok(Math.abs(p['rc-rs'].up.delayMs - 10.75) < 1e-9);
  assert.ok(Math.abs(p['rc-rs'].up.jitterMs - 1) < 1e-9);
  assert.throws(() => scaleDelays(paper(), -1), LabConfigError);
});

void test('lab prefixes: short, lowercase, fit in interface names', () => {
  for (const ok of ['tsl', 't1', 'abcdefgh']) assert.equal(verifyPrefix(ok), ok);
  for (const bad of ['', '1t', 'T1', 'abcdefghi', 'a-b', 'a b', '../x']) assert.throws(() => verifyPrefix(bad), LabConfigError, bad);
});

void test('address plan: only 198.18.0.0/15, link ends agree with ADDRESS_PLAN, routes go via a neighbour', () => {
  const inBlock = (a: string) => /^198\.(18|19)\.\d+\.\d+$/.test(a);
  for (const name of LINK_NAMES) {
    const l = LINK_PLAN[name];
    assert.ok(inBlock(l.a.address) && inBlock(l.b.address) && inBlock(l.subnet), name);
    assert.equal(l.a.address.split('.').slice(0, 3).join('.'), l.b.address.split('.').slice(0, 3).join('.'), `${name} ends share a /24`);
    assert.ok(l.a.device.length <= 15 && l.b.device.length <= 15);
  }
  assert.equal(ADDRESS_PLAN.client.path, LINK_PLAN['client-rc'].a.address);
  assert.equal(ADDRESS_PLAN.server.path, LINK_PLAN['rs-server'].b.address);
  assert.equal(ADDRESS_PLAN.client.internet, LINK_PLAN.internet.a.address);
  assert.equal(ADDRESS_PLAN.server.internet, LINK_PLAN.internet.b.address);
  for (const [node, subnet, via] of ROUTES) {
    assert.ok(inBlock(subnet.split('/')[0] ?? ''), subnet);
    const neighbour = LINK_NAMES.some((n) => {
      const l = LINK_PLAN[n];
      return (l.a.node === node && l.b.address === via) || (l.b.node === node && l.a.address === via);
    });
    assert.ok(neighbour, `${node}: ${subnet} via ${via} is a directly connected neighbour`);
  }
});
