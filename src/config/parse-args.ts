/**
 * `tcpsplit relay` argv → RelayOptions. Accepts `--opt value`, `--opt=value`,
 * `-L value` and `-Lvalue`. No value of any option begins with '-', so a following
 * option is reported as a missing value rather than swallowed.
 */
import { ConfigError } from '../errors.js';
import { applyOption, emptyOptions, optionByName, optionByShort, type OptionSpec, type RelayOptions } from './relay-options.js';

/** Throws ConfigError. Stops at `-h`/`--help` and returns `{ help: true }` options. */
export function parseRelayArgs(argv: readonly string[]): RelayOptions {
  const options = emptyOptions();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    let spec: OptionSpec | undefined;
    let label: string;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      label = eq === -1 ? arg : arg.slice(0, eq);
      inline = eq === -1 ? undefined : arg.slice(eq + 1);
      spec = optionByName(label.slice(2));
    } else if (arg.startsWith('-') && arg.length >= 2) {
      label = arg.slice(0, 2);
      inline = arg.length > 2 ? arg.slice(2).replace(/^=/, '') : undefined;
      spec = optionByShort(arg.slice(1, 2));
    } else {
      throw new ConfigError(`unexpected argument '${arg}' (see tcpsplit relay --help)`);
    }
    if (spec === undefined) throw new ConfigError(`unknown option '${label}' (see tcpsplit relay --help)`);
    if (spec.kind === 'flag') {
      if (inline !== undefined) throw new ConfigError(`${label} takes no value`);
      applyOption(spec, options, 'true', label);
      if (spec.name === 'help') return options;
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('-') && next.length > 1)) {
        throw new ConfigError(`${label} needs a value: expected ${spec.expected}`);
      }
      value = next;
      i++;
    }
    applyOption(spec, options, value, label);
  }
  return options;
}
