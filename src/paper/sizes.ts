/**
 * File sizes as the paper names them: 10 KB, 100 KB, 1 MB, 10 MB, binary (a KB is
 * 1024 bytes, as `dd bs=1K` makes them). `--sizes 10kb,1mb` or bare bytes (`12345`).
 * The file served for a size is named by it: /10kb, /1mb.
 */
import { LabConfigError } from '../errors.js';

export interface FileSize {
  readonly bytes: number;
  /** The name nginx serves it under, e.g. '10kb'. */
  readonly file: string;
  /** For tables and figures, e.g. '10 KB'. */
  readonly label: string;
}

export const PAPER_SIZES = ['10kb', '100kb', '1mb', '10mb'] as const;
export const QUICK_SIZES = ['10kb', '1mb'] as const;
export const MAX_SIZE_BYTES = 1024 ** 3;

const UNITS: Readonly<Record<string, number>> = { '': 1, 'b': 1, 'k': 1024, 'kb': 1024, 'm': 1024 ** 2, 'mb': 1024 ** 2, 'g': 1024 ** 3, 'gb': 1024 ** 3 };

export function parseSize(text: string): FileSize {
  const m = /^(\d+)\s*([a-z]*)$/i.exec(text.trim());
  const unit = m?.[2]?.toLowerCase() ?? '';
  const factor = Object.hasOwn(UNITS, unit) ? UNITS[unit] : undefined;
  if (m?.[1] === undefined || factor === undefined) {
    throw new LabConfigError(`--sizes: '${text}' is not a size (e.g. 10kb, 100kb, 1mb, 10mb; KB and MB are 1024-based, as the paper's files)`);
  }
  const n = Number(m[1]);
  const bytes = n * factor;
  if (bytes < 1 || bytes > MAX_SIZE_BYTES) throw new LabConfigError(`--sizes: '${text}' is out of range (1 byte to 1 GB)`);
  const short = unit === '' || unit === 'b' ? 'b' : `${unit[0] ?? ''}b`;
  return { bytes, file: `${String(n)}${short}`, label: short === 'b' ? `${String(n)} B` : `${String(n)} ${short.toUpperCase()}` };
}

export function parseSizes(list: string): FileSize[] {
  const sizes = list.split(',').filter((s) => s.trim() !== '').map(parseSize);
  if (sizes.length === 0) throw new LabConfigError('--sizes: empty list');
  const seen = new Set<number>();
  for (const s of sizes) {
    if (seen.has(s.bytes)) throw new LabConfigError(`--sizes: ${s.label} is listed twice`);
    seen.add(s.bytes);
  }
  return sizes.sort((a, b) => a.bytes - b.bytes);
}

/** The label of a size in bytes (for results read back from JSON). */
export function sizeLabel(bytes: number): string {
  for (const [unit, f] of [['GB', 1024 ** 3], ['MB', 1024 ** 2], ['KB', 1024]] as const) {
    if (bytes >= f && bytes % f === 0) return `${String(bytes / f)} ${unit}`;
  }
  return `${String(bytes)} B`;
}
