/**
 * Parsing and printing of the lab's quantities, with units always explicit:
 * durations (107.5ms, 250us, 1s), rates (100mbit, 1gbit; tc-style decimal prefixes),
 * sizes (64kb, 100kib, 1500b) and percentages (0.1%). A bare number is rejected where
 * its unit would be a guess.
 */
import { LabConfigError } from '../errors.js';

const NUMBER = String.raw`(\d+(?:\.\d+)?|\.\d+)`;

function match(text: string, units: Record<string, number>, what: string, example: string): number {
  const m = new RegExp(`^${NUMBER}\\s*([a-z%]*)$`, 'i').exec(text.trim());
  const unit = m?.[2]?.toLowerCase();
  const factor = unit === undefined ? undefined : units[unit];
  if (m?.[1] === undefined || factor === undefined) {
    throw new LabConfigError(
      `bad ${what} '${text}': expected a number with one of the units ${Object.keys(units).filter((u) => u !== '').join(', ')} (e.g. ${example})`);
  }
  return Number(m[1]) * factor;
}

/** '107.5ms' -> 107.5; '0' is allowed (no unit needed for zero). */
export function parseDurationMs(text: string): number {
  if (text.trim() === '0') return 0;
  return match(text, { s: 1000, ms: 1, us: 0.001 }, 'duration', '107.5ms');
}

/** '100mbit' -> 1e8 bits per second; '0' or 'unlimited' -> 0 (no cap). */
export function parseRateBitsPerSec(text: string): number {
  const t = text.trim().toLowerCase();
  if (t === '0' || t === 'unlimited' || t === 'none') return 0;
  return match(t, { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9 }, 'rate', '100mbit');
}

/** '64kb' -> 64000; 'kib' etc. are binary. */
export function parseBytes(text: string): number {
  return match(text, { b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 1048576 }, 'size', '64kb');
}

/** '0.1%' -> 0.001. The % is required: 'loss=1' could mean 1% or 100%. */
export function parseFraction(text: string): number {
  return match(text, { '%': 0.01 }, 'percentage', '0.1%');
}

export function formatMs(ms: number): string {
  return `${Number(ms.toFixed(3))}ms`;
}

export function formatRate(bitsPerSec: number): string {
  if (bitsPerSec === 0) return 'unlimited';
  for (const [unit, f] of [['gbit', 1e9], ['mbit', 1e6], ['kbit', 1e3]] as const) {
    if (bitsPerSec >= f) return `${Number((bitsPerSec / f).toFixed(3))}${unit}`;
  }
  return `${bitsPerSec}bit`;
}

export function formatPercent(fraction: number): string {
  return `${Number((fraction * 100).toFixed(4))}%`;
}
