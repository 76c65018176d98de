/**
 * deploy/relay-client.yaml (R_C) and deploy/relay-server.yaml (R_S) through the real CLI's
 * `relay --check`, with --key-file pointing at a key in a temp dir (a flag replaces the
 * file's /etc/tcpsplit/key); every key commented; docs/deploy.md showing both verbatim.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI } from './helpers/relay-process.js';

const deploy = (name: string): string => fileURLToPath(new URL(`../../deploy/${name}`, import.meta.url));
const DOC = fileURLToPath(new URL('../../docs/deploy.md', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-deploy-'));
after(() => { rmSync(dir, { recursive: true, force: true }); });
const key = join(dir, 'key');
writeFileSync(key, randomBytes(32), { mode: 0o600 });

function check(file: string): string {
  const r = spawnSync(process.execPath, [CLI, 'relay', '--config', file, '--key-file', key, '--check'], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, `${file}: ${r.stderr}${r.stdout}`);
  assert.match(r.stdout, /^config OK\n/);
  assert.doesNotMatch(r.stdout, /warning:/, 'a sample config should need no warning');
  return r.stdout;
}

const table: { file: string; lines: RegExp[] }[] = [
  {
    file: 'relay-client.yaml',
    lines: [
      /^ {2}intercept \(redirect\): 198\.19\.0\.0\/16 -> listener \[::\]:7080, nftables table inet tcpsplit_p7080;/m,
      /^ {2}peer rs: 203\.0\.113\.7:7000$/m,
      /^ {2}route 198\.19\.0\.0\/16 -> peer rs$/m,
      /^ {2}key: 32 bytes$/m,
      /^ {2}metrics: http:\/\/127\.0\.0\.1:9090\/metrics$/m,
      /^ {2}pool: on, 4 to 16 ready connections per peer and worker, closed unused after 60000 ms$/m,
      /^ {2}turbo: on, routes to rs with initcwnd 100 initrwnd 100 /m,
    ],
  },
  {
    file: 'relay-server.yaml',
    lines: [
      /^ {2}accept: relay connections on 0\.0\.0\.0:7000$/m,
      /^ {4}allow 198\.19\.0\.0\/16\n {4}deny 198\.19\.255\.0\/24\n {4}otherwise deny \(allow-list\)$/m,
      /^ {2}key: 32 bytes$/m,
      /^ {2}metrics: http:\/\/127\.0\.0\.1:9090\/metrics$/m,
      /^ {2}timeouts: connect \d+ ms, idle \d+ ms, header 3000 ms,/m,
      /^ {2}turbo: large buffers on the --accept listener/m,
    ],
  },
];

for (const { file, lines } of table) {
  test(`deploy/${file} passes tcpsplit relay --check and says what it does`, () => {
    const out = check(deploy(file));
    for (const line of lines) assert.match(out, line);
    // The file names the installed key; only this test's flag replaced it.
    assert.match(readFileSync(deploy(file), 'utf8'), /^key-file: \/etc\/tcpsplit\/key$/m);
  });

  test(`deploy/${file}: a comment right above every key`, () => {
    const text = readFileSync(deploy(file), 'utf8').split('\n');
    text.forEach((line, i) => {
      if (!/^[a-z][a-z-]*:/.test(line)) return;
      assert.match(text[i - 1] ?? '', /^# \S/, `${file}:${i + 1} '${line}' has its comment above it`);
    });
  });
}

test('docs/deploy.md shows both sample configs and the unit verbatim', () => {
  const doc = readFileSync(DOC, 'utf8');
  for (const [name, lang] of [['relay-client.yaml', 'yaml'], ['relay-server.yaml', 'yaml'], ['tcpsplit.service', 'ini']] as const) {
    const body = readFileSync(deploy(name), 'utf8');
    assert.ok(doc.includes(`\`\`\`${lang}\n${body}\`\`\`\n`), `docs/deploy.md has deploy/${name} in a \`\`\`${lang} block, byte for byte (copy it in again after an edit)`);
  }
});
