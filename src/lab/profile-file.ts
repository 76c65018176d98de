/**
 * Profile files (YAML or JSON; JSON is YAML). Values are the same strings as in
 * `--link` flags, so units are always explicit:
 *
 *   base: paper            # optional: a built-in profile to start from (default: none)
 *   links:
 *     rc-rs:
 *       rtt: 215ms
 *       rate: 100mbit
 *       down: { loss: 0.5% }   # one direction only
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { LabConfigError } from '../errors.js';
import { LINK_NAMES } from './address-plan.js';
import { PROFILES, applySetting, isLinkName, isProfileName, verifyProfile, type LabProfile, type LinkConfig } from './link-config.js';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function scalar(v: unknown, where: string): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  throw new LabConfigError(`${where}: expected a value like '10ms' or '100mbit', got ${JSON.stringify(v)}`);
}

export function builtinProfile(name: string): LabProfile {
  if (!isProfileName(name)) {
    throw new LabConfigError(`unknown profile '${name}' (built-in: ${Object.keys(PROFILES).join(', ')}; or a .yaml/.json file path)`);
  }
  return PROFILES[name];
}

/** Parses profile text; `source` names it in errors. */
export function parseProfileText(text: string, source: string): LabProfile {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new LabConfigError(`${source}: not valid YAML/JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!isRecord(doc)) throw new LabConfigError(`${source}: expected a mapping with 'links' (and optionally 'base')`);
  for (const key of Object.keys(doc)) {
    if (key !== 'base' && key !== 'links') throw new LabConfigError(`${source}: unknown top-level key '${key}' (expected base, links)`);
  }
  let profile = doc.base === undefined ? builtinProfile('none') : builtinProfile(scalar(doc.base, `${source}: base`));
  const links = doc.links ?? {};
  if (!isRecord(links)) throw new LabConfigError(`${source}: 'links' must be a mapping of link name to settings`);
  for (const [name, settings] of Object.entries(links)) {
    if (!isLinkName(name)) throw new LabConfigError(`${source}: unknown link '${name}' (links: ${LINK_NAMES.join(', ')})`);
    if (!isRecord(settings)) throw new LabConfigError(`${source}: link ${name}: expected a mapping of settings`);
    let link: LinkConfig = profile[name];
    for (const [key, value] of Object.entries(settings)) {
      if ((key === 'up' || key === 'down') && isRecord(value)) {
        for (const [k, v] of Object.entries(value)) {
          link = applySetting(link, `${key}.${k}`, scalar(v, `${source}: link ${name} ${key}.${k}`), `${source}: link ${name}`);
        }
      } else {
        link = applySetting(link, key, scalar(value, `${source}: link ${name} ${key}`), `${source}: link ${name}`);
      }
    }
    profile = { ...profile, [name]: link };
  }
  try {
    verifyProfile(profile);
  } catch (err) {
    if (err instanceof LabConfigError) throw new LabConfigError(`${source}: ${err.message}`);
    throw err;
  }
  return profile;
}

/** A built-in name ('paper', 'none') or a path to a YAML/JSON file. */
export function loadProfile(nameOrPath: string): LabProfile {
  if (isProfileName(nameOrPath)) return PROFILES[nameOrPath];
  if (!/[./]/.test(nameOrPath)) return builtinProfile(nameOrPath); // a typo'd name: say so
  let text: string;
  try {
    text = readFileSync(nameOrPath, 'utf8');
  } catch (err) {
    throw new LabConfigError(`cannot read profile file '${nameOrPath}': ${err instanceof Error ? err.message : String(err)}`);
  }
  return parseProfileText(text, nameOrPath);
}
