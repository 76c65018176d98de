import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI } from './helpers/relay-process.js';

const DOC = fileURLToPath(new URL('../../docs/deploy.md', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'tcpsplit-docs-'));
after(() => { rmSync(dir, { recursive: true, force: true }); });

test('every YAML config in docs/deploy.md passes tcpsplit relay --check', () => {
  const blocks = [...readFileSync(DOC, 'utf8').matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
  assert.ok(blocks.length >= 2, 'the doc shows the R_C and R_S configs');
  // The blocks name the installed key, /etc/tcpsplit/key; --key-file replaces it with one made here.
  const key = join(dir, 'relay.key');
  writeFileSync(key, randomBytes(32), { mode: 0o600 });
  blocks.forEach((yaml, i) => {
    const file = join(dir, `config-${i}.yaml`);
    writeFileSync(file, yaml);
    const r = spawnSync(process.execPath, [CLI, 'relay', '--config', file, '--key-file', key, '--check'], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(r.status, 0, `block ${i + 1}:\n${yaml}\n${r.stderr}`);
    assert.match(r.stdout, /^config OK/);
    assert.doesNotMatch(r.stdout, /warning:/, `block ${i + 1}: a deployment example should not need a warning`);
  });
});
