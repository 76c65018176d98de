/**
 * The emulator for one link: two worker threads, one per direction, between the TUN
 * fds of the link's two ends. The fds belong to the caller; stop() ends the threads
 * but does not close them.
 */
import { Worker } from 'node:worker_threads';
import { LabError } from '../../errors.js';
import type { DirectionConfig, LinkConfig } from '../link-config.js';
import { createCounterBuffer, readCounters, type DirectionCounters } from './counters.js';
import type { DirectionWorkerData } from './direction-worker.js';

const WORKER_URL = new URL('./direction-worker.js', import.meta.url);
const START_TIMEOUT_MS = 5000;

/** Ring slots for a direction: enough for its delay line at ~60k packets/s plus its queue. */
export function slotsFor(config: DirectionConfig): number {
  const queue = config.queueLimit.unit === 'packets' ? config.queueLimit.value : config.queueLimit.value / 64;
  const wanted = (config.delayMs + config.jitterMs + 50) * 60 + queue;
  let slots = 1024;
  while (slots < wanted && slots < 65536) slots *= 2;
  return slots;
}

class DirectionThread {
  readonly counters = createCounterBuffer();
  readonly #control = new Int32Array(new SharedArrayBuffer(8));
  readonly #worker: Worker;
  readonly #exited: Promise<void>;
  error: Error | undefined;

  constructor(inFd: number, outFd: number, config: DirectionConfig) {
    const data: DirectionWorkerData = {
      inFd, outFd, config, slots: slotsFor(config), counters: this.counters, control: this.#control,
    };
    // execArgv: []: the parent's flags (e.g. --input-type) may not apply to a worker file.
    this.#worker = new Worker(WORKER_URL, { workerData: data, name: 'tcpsplit-link', execArgv: [] });
    this.#worker.on('error', (err) => { this.error = err; });
    this.#exited = new Promise((resolve) => { this.#worker.once('exit', () => { resolve(); }); });
  }

  async started(): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Atomics.load(this.#control, 1) === 0) {
      if (this.error !== undefined) throw this.error;
      if (Date.now() > deadline) throw new LabError('link emulator thread did not start within 5 s');
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  async stop(): Promise<void> {
    Atomics.store(this.#control, 0, 1);
    const timer = setTimeout(() => { void this.#worker.terminate(); }, 2000);
    await this.#exited;
    clearTimeout(timer);
  }
}

export class LinkEmulator {
  readonly name: string;
  readonly config: LinkConfig;
  readonly #up: DirectionThread;
  readonly #down: DirectionThread;

  private constructor(name: string, config: LinkConfig, aFd: number, bFd: number) {
    this.name = name;
    this.config = config;
    this.#up = new DirectionThread(aFd, bFd, config.up);
    this.#down = new DirectionThread(bFd, aFd, config.down);
  }

  /** Starts both directions: up reads `aFd` and writes `bFd`, down the reverse. */
  static async start(name: string, config: LinkConfig, aFd: number, bFd: number): Promise<LinkEmulator> {
    const link = new LinkEmulator(name, config, aFd, bFd);
    try {
      await Promise.all([link.#up.started(), link.#down.started()]);
    } catch (err) {
      await link.stop();
      throw new LabError(`link ${name}: emulator failed to start: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    return link;
  }

  counters(): { up: DirectionCounters; down: DirectionCounters } {
    return { up: readCounters(this.#up.counters), down: readCounters(this.#down.counters) };
  }

  /** A thread's crash, if any (reported by `lab status`). */
  failure(): Error | undefined {
    return this.#up.error ?? this.#down.error;
  }

  async stop(): Promise<void> {
    await Promise.all([this.#up.stop(), this.#down.stop()]);
  }
}
