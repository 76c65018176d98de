/**
 * `relay --check` (describeConfig over loadRelayConfig): configs that are valid but do not
 * do what was meant come with a warning, and each forward says which way it goes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadRelayConfig } from '../src/config/load-config.js';
import { describeConfig } from '../src/cli/relay-check.js';
import { KEY_HEX } from './helpers/net.js';

const env: NodeJS.ProcessEnv = { TCPSPLIT_KEY: KEY_HEX };

async function check(argv: string[]): Promise<{ text: string; warnings: readonly string[] }> {
  const { config, warnings } = await loadRelayConfig(argv, env);
  return { text: describeConfig(config, warnings), warnings };
}

void test('each forward line says via which peer, or direct', async () => {
  const { text, warnings } = await check(['-L', '8080:198.18.3.2:80', '-L', '8081:example.com:80', '-L', '8082:10.0.0.1:22',
    '--peer', 'rs=198.18.2.2:7000', '--route', '198.18.0.0/15=rs', '--route', '10.0.0.0/8=direct']);
  assert.match(text, /forward: listen 127\.0\.0\.1:8080 -> 198\.18\.3\.2:80, via peer rs$/m);
  assert.match(text, /forward: listen 127\.0\.0\.1:8081 -> example\.com:80, via the route of the address the name resolves to$/m);
  assert.match(text, /forward: listen 127\.0\.0\.1:8082 -> 10\.0\.0\.1:22, direct$/m);
  assert.equal(warnings.length, 1, warnings.join('\n'));
  assert.match(warnings[0] ?? '', /^-L 127\.0\.0\.1:8082 goes direct to 10\.0\.0\.1:22, not through a peer, though peers are configured/);
  const alone = await check(['-L', '8080:198.18.3.2:80']);
  assert.match(alone.text, /-> 198\.18\.3\.2:80, direct$/m);
  assert.deepEqual(alone.warnings, [], 'no peers: direct is the only way, nothing to warn about');
});

void test('a peer that no route uses is a warning', async () => {
  const { text, warnings } = await check(['-L', '8080:198.18.3.2:80', '--peer', 'rs=198.18.2.2:7000', '--peer', 'spare=198.18.2.3:7000',
    '--route', '0.0.0.0/0=rs']);
  assert.deepEqual(warnings, ['--peer spare is used by no --route, so nothing goes through it: add --route CIDR=spare']);
  assert.match(text, /^ {2}warning: --peer spare is used by no --route/m);
});

void test('--accept without --allow is a warning; with --allow it is not', async () => {
  const open = await check(['--accept', '7000']);
  assert.equal(open.warnings.length, 1);
  assert.match(open.warnings[0] ?? '', /^--accept without --allow: any peer holding the key can make this relay connect anywhere/);
  const narrow = await check(['--accept', '7000', '--allow', '10.20.0.0/16']);
  assert.deepEqual(narrow.warnings, []);
});
