import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Lab } from '../../src/lab/lab.js';
import type { LabNode } from '../../src/lab/address-plan.js';

export function sha256File(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** `nft list ruleset` in a node. */
export async function ruleset(lab: Lab, node: LabNode): Promise<string> {
  const r = await lab.exec(node, 'nft', ['list', 'ruleset']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

/** The ruleset's tables by header line (`table inet x`), each with its full text. */
export function tablesOf(text: string): Map<string, string> {
  const tables = new Map<string, string>();
  for (const m of text.matchAll(/^table (\S+ \S+) \{$[\s\S]*?^\}$/gm)) tables.set(m[1] ?? '', m[0]);
  return tables;
}

/** Tables other than tcpsplit's, as text: must be the same before, during and after. */
export function foreignTables(text: string): string[] {
  // The iptables-nft `mangle` table holding early SYN's TCPSPLIT-* chains is the relay's too (docs/early-syn.md).
  return [...tablesOf(text)].filter(([name, t]) => !name.startsWith('inet tcpsplit_') && !t.includes('TCPSPLIT-')).map(([, t]) => t);
}

export function ourTables(text: string): string[] {
  return [...tablesOf(text).keys()].filter((name) => name.startsWith('inet tcpsplit_'));
}

/** A table that is not ours, with a rule, for the relay to leave alone. */
export async function addForeignTable(lab: Lab, node: LabNode): Promise<void> {
  const script = 'table inet foreign_test {\n  chain pre {\n    type filter hook prerouting priority 10; policy accept;\n    tcp dport 9 counter\n  }\n}\n';
  const r = await lab.exec(node, 'nft', ['-f', '-'], { input: script });
  assert.equal(r.code, 0, r.stderr);
}

/** `ip rule` and `ip -6 rule` lines of a node. */
export async function ipRules(lab: Lab, node: LabNode): Promise<string> {
  const v4 = await lab.exec(node, 'ip', ['-4', 'rule']);
  const v6 = await lab.exec(node, 'ip', ['-6', 'rule']);
  return `${v4.stdout}${v6.stdout}`;
}
