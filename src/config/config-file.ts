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
import { applyOption, emptyOptions, optionByName, type RelayOptions } from './relay-options.js';
import type { ConfigDocument, DocumentValue } from './config-schema.js';

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
  const options = await parseConfigText(text, file);
  if (options.keyFile !== undefined) options.keyFile = resolve(dirname(file), options.keyFile);
  return options;
}

/** `source` names the file in messages. */
export async function parseConfigText(text: string, source: string): Promise<RelayOptions> {
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true });
  const first = doc.errors[0];
  if (first !== undefined) {
    const before = text.slice(0, first.pos[0]).split('\n');
    const at = `${before.length}:${(before.at(-1)?.length ?? 0) + 1}`;
    throw new ConfigError(`${source}:${at}: not valid YAML: ${first.message}`);
  }
  // Maps as Map keeps keys like '__proto__' plain data (and null-prototype objects after).
  const root: unknown = doc.toJS({ mapAsMap: true });
  const { checkConfigDocument } = await import('./config-schema.js');
  return optionsOfDocument(checkConfigDocument(plain(root) ?? {}, source), source);
}

/** A checked document (the file's, or a control API change) as RelayOptions; `source` names it in messages. */
export function optionsOfDocument(doc: ConfigDocument, source: string): RelayOptions {
  const options = emptyOptions();
  for (const [key, value] of Object.entries(doc)) {
    const spec = optionByName(key);
    if (spec === undefined) throw new ConfigError(`${source}: unknown key '${key}'`); // the schema knows the same keys
    const label = `${source}: ${spec.name}`;
    for (const item of flagValues(value)) applyOption(spec, options, item, label);
  }
  return options;
}

/** The flag-form strings a checked document value stands for (what `--name VALUE` would take). */
function flagValues(value: DocumentValue): string[] {
  if (typeof value !== 'object') return [String(value)];
  if (!Array.isArray(value)) return Object.entries(value as Readonly<Record<string, string | number | boolean>>).map(([k, v]) => `${k}=${String(v)}`);
  return (value as readonly (string | number | boolean | { readonly listen: string | number | boolean; readonly target: string | number | boolean })[])
    .map((item) => (typeof item === 'object' ? `${String(item.listen)}:${String(item.target)}` : String(item)));
}

/** YAML maps (Map) as null-prototype objects, so that no key can reach Object.prototype. */
function plain(value: unknown): unknown {
  if (value instanceof Map) {
    const out = Object.create(null) as Record<string, unknown>;
    for (const [k, v] of value as Map<unknown, unknown>) out[String(k)] = plain(v);
    return out;
  }
  if (Array.isArray(value)) return value.map(plain);
  return value;
}
