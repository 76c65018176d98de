import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export interface LoggerOptions {
  /** More fields on every line (a worker thread adds `worker: k`). */
  readonly base?: Readonly<Record<string, unknown>>;
  /** Lines whose merge object this returns true for are not written. */
  readonly drop?: (fields: object, level: number) => boolean;
}

/**
 * Structured JSON logs on stderr (fd 2), so stdout stays free for command output.
 * Lines are batched into writes of up to 4 KiB, flushed at least every 250 ms and at
 * exit: at thousands of connections a second, one write() per line was ~6% of the relay's
 * thread. Call logger.flush() after a line someone waits for (ready, stopped).
 */
export function createLogger(level: LevelWithSilent = 'info', name = 'tcpsplit', options: LoggerOptions = {}): Logger {
  const { drop } = options;
  return pino(
    {
      name, level, base: { pid: process.pid, ...options.base },
      ...(drop === undefined ? {} : {
        hooks: {
          logMethod(args, method, level) {
            const first: unknown = args[0];
            if (typeof first === 'object' && first !== null && drop(first, level)) return;
            method.apply(this, args);
          },
        },
      }),
    },
    pino.destination({ dest: 2, sync: false, minLength: 4096, periodicFlush: 250 }),
  );
}

/** A logger that drops everything, for library use and tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
