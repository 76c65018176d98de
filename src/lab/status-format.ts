/** `tcpsplit lab status` and `lab up` output: the address plan and a per-direction link table. */
import { ADDRESS_PLAN, LINK_NAMES } from './address-plan.js';
import type { LabStatus, LabWebStatus } from './lab.js';
import type { DirectionConfig, LabProfile } from './link-config.js';
import { formatMs, formatPercent, formatRate } from './units.js';

function pad(cells: readonly string[], widths: readonly number[]): string {
  return cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
}

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows.reduce<number[]>((w, r) => r.map((c, i) => Math.max(w[i] ?? 0, c.length)), []);
  return rows.map((r) => pad(r, widths)).join('\n');
}

function queueText(d: DirectionConfig): string {
  return d.queueLimit.unit === 'packets' ? `${d.queueLimit.value}p` : `${d.queueLimit.value}b`;
}

export function formatAddressPlan(): string {
  const rows: string[][] = [['node', 'side', 'address']];
  for (const [node, sides] of Object.entries(ADDRESS_PLAN)) {
    for (const [side, address] of Object.entries(sides)) rows.push([node, side, address]);
  }
  return table(rows);
}

export function formatProfile(profile: LabProfile): string {
  const rows: string[][] = [['link', 'dir', 'delay', 'jitter', 'rate', 'queue', 'loss']];
  for (const name of LINK_NAMES) {
    for (const dir of ['up', 'down'] as const) {
      const d = profile[name][dir];
      rows.push([name, dir, formatMs(d.delayMs), formatMs(d.jitterMs), formatRate(d.rateBitsPerSec), queueText(d), formatPercent(d.lossRate)]);
    }
  }
  return table(rows);
}

/** The web server's lines: its files and URLs, and a command to try. */
export function formatWeb(web: LabWebStatus, prefix: string, defaultPrefix: boolean): string {
  const files = Object.keys(web.files);
  const example = files.find((f) => f === '1mb') ?? files[0] ?? '';
  return [
    `web: nginx in 'server' on port ${String(web.port)}, files ${files.join(' ')}`,
    `  through rc and rs: ${web.path}${example}`,
    `  direct (internet): ${web.internet}${example}`,
    `  try: tcpsplit lab exec${defaultPrefix ? '' : ` --prefix ${prefix}`} client -- curl -o /dev/null -w '%{time_starttransfer} s first byte, %{time_total} s in all\\n' ${web.path}${example}`,
  ].join('\n');
}

export function formatStatus(status: LabStatus, defaultPrefix = false): string {
  const rows: string[][] = [[
    'link', 'dir', 'delay', 'jitter', 'rate', 'queue', 'loss',
    'rx pkts', 'tx pkts', 'tx bytes', 'drop loss', 'drop queue', 'drop buf', 'drop write', 'drop big', 'queued', 'late ms mean/max',
  ]];
  const failures: string[] = [];
  for (const link of status.links) {
    for (const dir of ['up', 'down'] as const) {
      const d = link.config[dir];
      const c = link.counters[dir];
      rows.push([
        link.name, dir, formatMs(d.delayMs), formatMs(d.jitterMs), formatRate(d.rateBitsPerSec), queueText(d),
        formatPercent(d.lossRate), String(c.rxPackets), String(c.txPackets), String(c.txBytes),
        String(c.drops.loss), String(c.drops.queue), String(c.drops.buffer), String(c.drops.write), String(c.drops.oversize),
        String(c.queuedPackets), `${c.lateMeanMs.toFixed(3)}/${c.lateMaxMs.toFixed(3)}`,
      ]);
    }
    if (link.failure !== undefined) failures.push(`link ${link.name}: emulator thread failed: ${link.failure}`);
  }
  return [
    `lab '${status.prefix}': up since ${status.startedAt}, owner pid ${status.ownerPid}`,
    `namespaces: ${Object.values(status.namespaces).join(' ')}`,
    '',
    formatAddressPlan(),
    '',
    table(rows),
    ...failures,
    ...(status.web === undefined ? [] : ['', formatWeb(status.web, status.prefix, defaultPrefix)]),
    '',
  ].join('\n');
}
