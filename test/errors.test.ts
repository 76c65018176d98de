import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as errors from '../src/errors.js';
import { ALL_ERRORS, INTERNAL_ERROR_CODE, TcpsplitError } from '../src/errors.js';

const DOC = fileURLToPath(new URL('../../docs/errors.md', import.meta.url));

test('docs/errors.md lists exactly the codes in src/errors.ts', () => {
  const documented = new Set([...readFileSync(DOC, 'utf8').matchAll(/^\| `(TCPSPLIT_ERR_[A-Z_]+)` \|/gm)].map((m) => m[1]));
  const defined = new Set<string>([...ALL_ERRORS.map((E) => E.code), INTERNAL_ERROR_CODE]);
  assert.deepEqual([...defined].filter((c) => !documented.has(c)), [], 'codes missing from docs/errors.md');
  assert.deepEqual([...documented].filter((c) => c !== undefined && !defined.has(c)), [], 'codes documented but not defined');
});

test('every error class has a unique code and carries it on instances', () => {
  const codes = ALL_ERRORS.map((E) => E.code);
  assert.equal(new Set(codes).size, codes.length, 'duplicate codes');
  for (const E of ALL_ERRORS) {
    const err = new E('m');
    assert.ok(err instanceof TcpsplitError);
    assert.equal(err.code, E.code);
    assert.match(err.code, /^TCPSPLIT_ERR_[A-Z_]+$/);
  }
});

test('every error class is named as it is exported, and its instances carry that name', () => {
  const exported = Object.entries(errors).filter(([, v]) => typeof v === 'function' && v.prototype instanceof TcpsplitError);
  assert.equal(exported.length, ALL_ERRORS.length, 'ALL_ERRORS lists every exported error class');
  for (const [exportName, E] of exported) {
    const Class = E as (typeof ALL_ERRORS)[number];
    assert.ok((ALL_ERRORS as readonly unknown[]).includes(Class), `${exportName} is in ALL_ERRORS`);
    assert.equal(Class.name, exportName);
    const err = new Class('m');
    assert.equal(err.name, exportName);
    assert.match(String(err), new RegExp(`^${exportName}: m$`));
  }
});
