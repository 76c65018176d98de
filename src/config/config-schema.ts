/**
 * The shape of a config document, one schema (zod) for the YAML file and for the control
 * API's changes (`PATCH /v1/config`, `tcpsplit ctl set`): which keys exist and what form
 * each value takes. It is built from the option table (relay-options.ts), so a new option
 * is known to both at once. What a value means (a CIDR, a duration, a range) is then
 * checked by that option's parser, the same for flags, the file and the API.
 *
 * Loaded only when a document is checked (import()): zod is ~100 module files, and a
 * relay started with flags alone, or at a tight open-files limit (tested at 64), must not
 * open them all at once at start.
 */
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { OPTIONS, type OptionSpec } from './relay-options.js';

/** A value as YAML or JSON gives it: text, a finite number, or a boolean (`pool: true`). */
type Scalar = string | number | boolean;
/** A list option: one value, a list, a map (peer, route) or forward's {listen, target} entries. */
export type DocumentValue = Scalar | readonly (Scalar | { readonly listen: Scalar; readonly target: Scalar })[] | Readonly<Record<string, Scalar>>;
export type ConfigDocument = Readonly<Record<string, DocumentValue>>;

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  return typeof value;
}

function scalar(spec: OptionSpec): z.ZodType<Scalar> {
  return z.union([z.string(), z.number(), z.boolean()], { error: (iss) => `expected ${spec.expected}, got ${describe(iss.input)}` });
}

/** One of forward's {listen, target}: a missing one is named as such. */
function entryField(spec: OptionSpec): z.ZodType<Scalar> {
  return z.union([z.string(), z.number()], {
    error: (iss) => (iss.input === undefined ? 'an entry needs both listen and target' : `expected ${spec.expected}, got ${describe(iss.input)}`),
  });
}

const forwardEntry = (spec: OptionSpec): z.ZodType<{ listen: Scalar; target: Scalar }> => z.strictObject({ listen: entryField(spec), target: entryField(spec) }, {
  error: (iss) => {
    if (iss.code === 'unrecognized_keys') return `unknown key '${iss.keys.join("', '")}' (expected listen and target)`;
    return 'an entry needs both listen and target';
  },
});

/**
 * The schema that fits the value's form, chosen by its type (a list, a map, a scalar), so
 * that an error speaks of that form ("an entry needs both listen and target") instead of
 * a union's "none of these matched".
 */
function byForm(forms: { list?: z.ZodType; map?: z.ZodType; scalar: z.ZodType }): z.ZodType<DocumentValue> {
  return z.unknown().superRefine((value, ctx) => {
    const schema = Array.isArray(value) ? forms.list : typeof value === 'object' && value !== null ? forms.map : forms.scalar;
    const result = (schema ?? forms.scalar).safeParse(value);
    if (result.success) return;
    for (const issue of result.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path, input: value });
  }) as unknown as z.ZodType<DocumentValue>;
}

function valueSchema(spec: OptionSpec): z.ZodType<DocumentValue> {
  if (spec.kind === 'flag') return z.boolean({ error: 'expected true or false' });
  const one = scalar(spec);
  if (spec.kind === 'scalar') return one;
  if (spec.name === 'forward') {
    const item = byForm({ map: forwardEntry(spec), scalar: one });
    return byForm({ list: z.array(item), map: forwardEntry(spec), scalar: one });
  }
  if (spec.name === 'peer' || spec.name === 'route' || spec.name === 'pool-peer') return byForm({ list: z.array(one), map: z.record(z.string(), one), scalar: one });
  return byForm({ list: z.array(one), scalar: one });
}

/** Every key a config file may hold, with its value's form; unknown keys are refused. */
export const configDocumentSchema = z.strictObject(
  Object.fromEntries(OPTIONS.filter((s) => s.inFile).map((s) => [s.name, valueSchema(s).optional()])),
  { error: (iss) => (iss.code === 'unrecognized_keys' ? `unknown key '${iss.keys.join("', '")}'` : `expected a map of option: value at the top level, got ${describe(iss.input)}`) },
);

/**
 * Checks `input` (a parsed YAML root or a JSON body) against the schema. Throws
 * ConfigError naming `source` and the key: `relay.yaml: pool-low: expected ...`.
 */
export function checkConfigDocument(input: unknown, source: string): ConfigDocument {
  const result = configDocumentSchema.safeParse(input);
  if (result.success) return result.data as ConfigDocument;
  const issue = result.error.issues[0];
  const key = issue?.path[0];
  const where = key === undefined || issue?.code === 'unrecognized_keys' ? source : `${source}: ${String(key)}`;
  throw new ConfigError(`${where}: ${issue?.message ?? 'not a config document'}`);
}
