/**
 * What the relay tells its service manager (systemd `Type=notify`, deploy/tcpsplit.service):
 * READY=1 once it serves, RELOADING=1 with MONOTONIC_USEC while a SIGHUP reload runs and
 * READY=1 after it (whether it applied or not: the relay serves either way), STOPPING=1
 * when a drain starts.
 *
 * Without $NOTIFY_SOCKET (not under systemd) every call is a no-op. A failure never
 * reaches the relay: the first is logged as a warning with its code
 * (TCPSPLIT_ERR_SD_NOTIFY), later ones are tried again but not logged, so a broken
 * socket costs one line, not one per reload.
 */
import { errorCode, SdNotifyError } from '../errors.js';
import { monotonicMicroseconds, sendNotify } from '../sys/index.js';
import type { Logger } from './logger.js';

export class ServiceNotifier {
  readonly #socket: string | undefined;
  readonly #logger: Logger;
  #failed = false;

  constructor(logger: Logger, env: NodeJS.ProcessEnv = process.env) {
    const socket = env['NOTIFY_SOCKET'];
    this.#socket = socket === undefined || socket === '' ? undefined : socket;
    this.#logger = logger;
  }

  ready(): void {
    this.#send(() => 'READY=1');
  }

  /** Before a reload; MONOTONIC_USEC tells systemd (253 and later, Type=notify-reload) that this reload began after its signal. */
  reloading(): void {
    this.#send(() => `RELOADING=1\nMONOTONIC_USEC=${monotonicMicroseconds()}`);
  }

  stopping(): void {
    this.#send(() => 'STOPPING=1');
  }

  #send(message: () => string): void {
    const socket = this.#socket;
    if (socket === undefined) return;
    try {
      sendNotify(socket, message());
    } catch (err) {
      if (this.#failed) return;
      this.#failed = true;
      const reason = err instanceof Error ? err.message : String(err);
      const wrapped = new SdNotifyError(`cannot notify the service manager at NOTIFY_SOCKET=${socket}: ${reason}`, { cause: err });
      this.#logger.warn({ event: 'sd-notify', code: wrapped.code, cause: errorCode(err) },
        `${wrapped.message} (further failures are not logged)`);
    }
  }
}
