/**
 * A thread's event-loop lag, as an operator reads it: the p99 of the loop's delay over
 * the time since the last scrape (perf_hooks' histogram, reset at each read), so one
 * stall shows at the next scrape and then ages out instead of staying in a lifetime p99.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/** The histogram's sampling period: finer than the stalls worth seeing, cheap enough to leave on. */
const RESOLUTION_MS = 10;

/** One per worker thread, for its lifetime: the thread's end stops it. */
export class EventLoopLag {
  readonly #histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });

  constructor() {
    this.#histogram.enable();
  }

  /** Seconds: the p99 delay since the previous read (0 before any sample), then starts a new window. */
  readonly p99Seconds = (): number => {
    const h = this.#histogram;
    // Node records the whole interval between the histogram's timer ticks: an idle loop
    // reads as RESOLUTION_MS. The lag is what exceeds it.
    const p99 = h.count === 0 ? 0 : Math.max(0, h.percentile(99) / 1e9 - RESOLUTION_MS / 1e3);
    h.reset();
    return p99;
  };
}
