/**
 * What the control API changes, and how: a change is a config document (the YAML file's
 * keys, checked by the same schema, src/config/config-schema.ts) laid over the file and
 * the flags. The whole config is built again and handed to the supervisor's reload, so a
 * change is checked in full before any worker sees it, and then every worker takes it or
 * none does. Changes last until the file is reloaded (SIGHUP, `ctl reload`) or the relay
 * restarts: the file stays the one source of truth, and `ctl config --diff` shows what a
 * reload would undo.
 */
import type { Logger } from '../observe/logger.js';
import type { RelayConfig } from '../config/relay-config.js';
import { buildRelayConfig, readRelayOptions, type LoadedRelayConfig } from '../config/load-config.js';
import type { RelayOptions } from '../config/relay-options.js';
import { parseRelayArgs } from '../config/parse-args.js';
import type { ConfigDocument } from '../config/config-schema.js';
import { optionsOfDocument } from '../config/config-file.js';
import { describeChanges, diffConfigs, type ConfigChange } from '../config/config-diff.js';
import { ConfigError } from '../errors.js';

/** What the control plane needs of the running relay (the Supervisor). */
export interface Reloadable {
  readonly config: RelayConfig;
  reload(config: RelayConfig): Promise<void>;
}

export class ControlPlane {
  readonly #argv: readonly string[];
  readonly #env: NodeJS.ProcessEnv;
  readonly #relay: Reloadable;
  readonly #logger: Logger;
  /** Run-time changes in force (option name -> value as given). */
  #overrides: Record<string, ConfigDocument[string]> = {};
  /** One change at a time, in the order asked. */
  #queue: Promise<unknown> = Promise.resolve();
  /** The file and flags as last loaded (at start, or the last reload): changes build on these. */
  #base: RelayOptions;

  /** `base`: the file and flags the running config was built from (readRelayOptions). */
  constructor(argv: readonly string[], env: NodeJS.ProcessEnv, relay: Reloadable, logger: Logger, base: RelayOptions) {
    this.#argv = argv;
    this.#env = env;
    this.#relay = relay;
    this.#logger = logger;
    this.#base = base;
  }

  /** The run-time changes in force, as given. */
  get overrides(): ConfigDocument {
    return { ...this.#overrides };
  }

  /**
   * Applies `patch` ({option: value}, null to drop an earlier change) to every worker,
   * built on the file as last loaded (edits to it since count only at a reload).
   * Throws ConfigError (a bad key or value, named) or RestartRequiredError, and then
   * nothing changed anywhere. Returns what changed.
   */
  change(patch: unknown, who: string): Promise<ConfigChange[]> {
    return this.#serial(async () => {
      if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) {
        throw new ConfigError('a change is a JSON object of option: value (null drops an earlier change), e.g. {"pool-low": 8}');
      }
      const { checkConfigDocument } = await import('../config/config-schema.js');
      const entries = Object.entries(patch as Record<string, unknown>);
      const dropped = new Set(entries.filter(([, v]) => v === null).map(([k]) => k));
      // A key to drop must be one the file could hold: checked like any other (null stands for its value).
      checkConfigDocument(Object.fromEntries([...dropped].map((k) => [k, undefined])), 'change');
      const given = Object.fromEntries(entries.filter(([, v]) => v !== null));
      const next: Record<string, ConfigDocument[string]> = {
        ...Object.fromEntries(Object.entries(this.#overrides).filter(([k]) => !dropped.has(k))),
        ...checkConfigDocument(given, 'change'),
      };
      const loaded = await this.#build(next);
      const changes = diffConfigs(this.#relay.config, loaded.config);
      await this.#relay.reload(loaded.config);
      this.#overrides = next;
      for (const warning of loaded.warnings) this.#logger.warn({ event: 'config-warning' }, warning);
      this.#logger.info({ event: 'control-change', by: who, changed: changes.map((c) => c.option), overrides: Object.keys(next) },
        `run-time change by ${who}: ${describeChanges(changes)}`);
      return changes;
    });
  }

  /**
   * Reloads the file (SIGHUP, `ctl reload`): run-time changes are dropped, and the log
   * says which. Throws as change() does; the running config then stays.
   */
  reloadFile(who: string, onLoaded: () => void = () => undefined): Promise<ConfigChange[]> {
    return this.#serial(async () => {
      const base = await this.#readFileNow();
      const loaded = await this.#build({}, base);
      onLoaded();
      const dropped = Object.keys(this.#overrides);
      for (const warning of loaded.warnings) this.#logger.warn({ event: 'config-warning' }, warning);
      const changes = diffConfigs(this.#relay.config, loaded.config);
      await this.#relay.reload(loaded.config);
      this.#overrides = {};
      this.#base = base;
      if (dropped.length > 0) {
        this.#logger.info({ event: 'control-change', by: who, dropped }, `reload from the file by ${who} dropped the run-time changes of ${dropped.join(', ')}`);
      }
      return changes;
    });
  }

  /** How the running config differs from what the file and flags give now. */
  async diff(): Promise<ConfigChange[]> {
    const fromFile = await this.#build({}, await this.#readFileNow());
    return diffConfigs(fromFile.config, this.#relay.config);
  }

  /** The config file as it is now, merged with the flags. */
  #readFileNow(): Promise<RelayOptions> {
    return readRelayOptions(parseRelayArgs(this.#argv));
  }

  /** The config from `base` (default: the file as last loaded, not as it is now) and `overrides`. */
  async #build(overrides: Record<string, ConfigDocument[string]>, base: RelayOptions = this.#base): Promise<LoadedRelayConfig> {
    const keys = Object.keys(overrides);
    const options = keys.length === 0 ? undefined : optionsOfDocument(overrides, 'change');
    return buildRelayConfig(parseRelayArgs(this.#argv), this.#env, options === undefined ? undefined : { options, keys }, base);
  }

  #serial<T>(run: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(run);
    this.#queue = next.catch(() => undefined);
    return next;
  }
}
