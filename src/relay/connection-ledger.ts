/**
 * What a worker keeps of its connections once they end, for the view (src/control/):
 * totals (closed, failed, bytes each way) and the last ERRORS_IN_VIEW failures, in a
 * bounded ring. Updated once per connection at its close, never per chunk.
 */
import { ERRORS_IN_VIEW, type ErrorView } from '../control/relay-view.js';
import { IdleClosedError } from '../errors.js';
import type { ConnectionRecord } from './split-connection.js';

export class ConnectionLedger {
  closed = 0;
  failed = 0;
  /** Bytes each way of the connections closed so far (the view and tcpsplit_bytes_total add the open ones' progress). */
  readonly closedBytes = { up: 0, down: 0 };
  /** Oldest first. */
  readonly #errors: ErrorView[] = [];
  readonly #worker: number;

  constructor(worker: number) {
    this.#worker = worker;
  }

  /**
   * One connection's end. `claimed`: it had a client (an early leg no accept claimed has
   * none). Failures a person should see are kept: not routine ends (an idle pooled
   * connection retired, an unclaimed early leg), which anyone can cause by the thousand.
   */
  record(record: ConnectionRecord, claimed: boolean): void {
    this.closed++;
    this.closedBytes.up += record.up;
    this.closedBytes.down += record.down;
    if (record.outcome === 'ok' || record.outcome === IdleClosedError.code || !claimed) return;
    this.failed++;
    const via = record.via === '-' ? '' : ` via ${record.via}`;
    this.#errors.push({ at: Date.now(), code: record.outcome, message: `${record.client} -> ${record.target}${via}: ${record.error ?? record.outcome}`, worker: this.#worker });
    if (this.#errors.length > ERRORS_IN_VIEW) this.#errors.shift();
  }

  /** Newest first. */
  recentErrors(): ErrorView[] {
    return [...this.#errors].reverse();
  }
}
