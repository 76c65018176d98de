/**
 * The YAML config file → RelayOptions. Keys are the long option names; values are what
 * the flag takes, or YAML-native forms where those read better:
 *
 *   forward: ["8080:example.com:80", {listen: "0.0.0.0:8443", target: "example.com:443"}]
 *   peer: {rs: "198.18.2.2:7000"}          # or ["rs=198.18.2.2:7000"]
 *   route: {"198.18.0.0/15": rs}           # or ["198.18.0.0/15=rs"]
 *   insecure: true
 *   connect-timeout: 5s                    # a unit is required: a bare number is refused, 0 excepted
 *
 * A relative key-file is taken relative to the config file, so a reload from any
 * working directory reads the same key.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigError } from '../errors.js';
import { applyOption, emptyOptions, optionByName, type OptionSpec, type RelayOptions } from './relay-options.js';

/** A config file is a few kilobytes; refuse to parse something that is clearly not one. */
const MAX_CONFIG_BYTES = 1 << 20;

export async function readConfigFile(file: string): Promise<RelayOptions> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  if (text.length > MAX_CONFIG_BYTES) throw new ConfigError(`config file ${file} is larger than ${MAX_CONFIG_BYTES} bytes`);
  const options = parseConfigText(text, file);
  if (options.keyFile !== undefined) options.keyFile = resolve(dirname(file), options.keyFile);
  return options;
}

/** `source` names the file in messages. */
export function parseConfigText(text: string, source: string): RelayOptions {
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true });
  const first = doc.errors[0];
  if (first !== undefined) {
    const before = text.slice(0, first.pos[0]).split('\n');
    const at = `${before.length}:${(before.at(-1)?.length ?? 0) + 1}`;
    throw new ConfigError(`${source}:${at}: not valid YAML: ${first.message}`);
  }
  // Maps as Map keeps keys like '__proto__' plain data.
  const root: unknown = doc.toJS({ mapAsMap: true });
  const options = emptyOptions();
  if (root === null || root === undefined) return options;
  if (!(root instanceof Map)) throw new ConfigError(`${source}: expected a map of option: value at the top level`);
  for (const [key, value] of root as Map<unknown, unknown>) {
    const spec = typeof key === 'string' ? optionByName(key) : undefined;
    if (spec?.inFile !== true) throw new ConfigError(`${source}: unknown key '${String(key)}'`);
    const label = `${source}: ${spec.name}`;
    for (const item of valuesOf(spec, value, label)) applyOption(spec, options, item, label);
  }
  return options;
}

/** The flag-form strings a YAML value stands for. */
function valuesOf(spec: OptionSpec, value: unknown, label: string): string[] {
  if (spec.kind === 'flag') {
    if (typeof value !== 'boolean') throw new ConfigError(`${label}: expected true or false`);
    return [String(value)];
  }
  if (spec.kind === 'scalar') return [scalarText(value, spec, label)];
  if (value instanceof Map && (spec.name === 'peer' || spec.name === 'route')) {
    return [...(value as Map<unknown, unknown>)].map(([k, v]) => `${scalarText(k, spec, label)}=${scalarText(v, spec, label)}`);
  }
  const items: unknown[] = Array.isArray(value) ? value : [value];
  return items.map((item) => {
    if (item instanceof Map && spec.name === 'forward') return forwardText(item as Map<unknown, unknown>, spec, label);
    return scalarText(item, spec, label);
  });
}

function forwardText(item: Map<unknown, unknown>, spec: OptionSpec, label: string): string {
  for (const key of item.keys()) {
    if (key !== 'listen' && key !== 'target') throw new ConfigError(`${label}: unknown key '${String(key)}' (expected listen and target)`);
  }
  if (!item.has('listen') || !item.has('target')) throw new ConfigError(`${label}: an entry needs both listen and target`);
  return `${scalarText(item.get('listen'), spec, label)}:${scalarText(item.get('target'), spec, label)}`;
}

function scalarText(value: unknown, spec: OptionSpec, label: string): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  // `pool: true` reads as well as `pool: on` (YAML 1.2 leaves `on` a string).
  if (typeof value === 'boolean') return String(value);
  throw new ConfigError(`${label}: expected ${spec.expected}, got ${describe(value)}`);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (value instanceof Map) return 'a map';
  return typeof value;
}
