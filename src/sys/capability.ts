/**
 * The process's effective capabilities, from /proc/self/status (CapEff): enough to say
 * "you need CAP_NET_ADMIN" before trying, instead of failing halfway through a setup.
 */
import { readFileSync } from 'node:fs';

/** linux/capability.h */
export const CAP_NET_ADMIN = 12;

/** Whether capability `bit` is in the effective set; undefined when /proc cannot tell. */
export function hasEffectiveCapability(bit: number, statusText?: string): boolean | undefined {
  let text = statusText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/status', 'utf8');
    } catch {
      return undefined;
    }
  }
  const m = /^CapEff:\s*([0-9a-f]+)$/im.exec(text);
  if (m?.[1] === undefined) return undefined;
  return ((BigInt(`0x${m[1]}`) >> BigInt(bit)) & 1n) === 1n;
}
