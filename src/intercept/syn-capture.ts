/**
 * SynCapture: one worker's SYN queue, read on a thread of its own
 * (syn-capture-thread.ts), delivering each captured SYN to `onSyn` on the owner's
 * event loop.
 *
 * One capture per worker, on queue `base + worker` of the rules in syn-rules.ts, which
 * steer each SYN to the queue of the worker that steer() names: the same worker whose
 * SO_REUSEPORT listener will accept the connection. The owner can check that: an event
 * whose steer() is not its own index is a steering miss.
 *
 * If the thread dies, its queue socket must close, or the kernel would keep queueing SYNs
 * to a socket nobody reads (holding each until the queue fills and fail-open starts).
 * A thread that ends normally closes it; one that is terminated or crashes cannot (fds
 * belong to the process, and a terminated thread runs no `finally`), so the owner closes
 * the fd when the thread exits without having closed it. Then the kernel unbinds the
 * queue and the rules' `--queue-bypass` lets SYNs through: connections are made after
 * accept, as without early SYN. If the whole process dies, the kernel closes the socket.
 *
 * Own the captures where a thread outlives the workers (the supervisor): a worker that
 * is a worker_thread takes its nested threads down with it when it dies, and then only
 * this exit handler, run by the thread that created the capture, closes the socket.
 */
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { NfqueueError } from '../errors.js';
import { close } from '../sys/fd.js';
import type { FourTuple } from '../net/four-tuple.js';
import { C, COUNTER_SLOTS, type RetargetCommand, type SynCaptureThreadData, type ThreadMessage } from './syn-capture-protocol.js';

export { synEventOf, type SynMessage } from './syn-capture-protocol.js';

const THREAD_URL = new URL('./syn-capture-thread.js', import.meta.url);
const START_TIMEOUT_MS = 5000;
const STOP_TIMEOUT_MS = 2000;

export { monotonicMs } from './clock.js';

export interface SynEvent extends FourTuple {
  readonly family: 4 | 6;
  /** The client's initial sequence number (a retransmitted SYN repeats it). */
  readonly isn: number;
  /** When the capture thread read the SYN, on monotonicMs()'s clock. */
  readonly t: number;
  /** The queue it arrived on. */
  readonly queueNum: number;
}

export interface SynCaptureOptions {
  readonly queueNum: number;
  /**
   * Where events go: a callback on this thread, or a MessagePort (transferred to the
   * capture thread, which posts SynMessages to it directly: read them with synEventOf()).
   * A port lets the thread that owns the capture (a supervisor) be another than the one
   * that pairs (a worker), without a hop through the owner's event loop.
   */
  readonly onSyn?: (event: SynEvent) => void;
  readonly port?: MessagePort;
  /** The thread failed after it started (its queue is unbound, so SYNs now bypass). */
  readonly onError?: (err: Error) => void;
  /** Bytes copied per packet (default 128: IPv4 or IPv6 + TCP headers with options). */
  readonly copyBytes?: number;
  /** Kernel queue length before fail-open (default 4096). */
  readonly maxLen?: number;
  /**
   * Run the loop in SCHED_FIFO, so a SYN wakes it ahead of ordinary threads (default
   * false). The loop sleeps in ppoll between SYNs, so it costs no CPU when idle; under a
   * flood the kernel's RT throttling still leaves other threads 5% of each CPU.
   */
  readonly realtime?: boolean;
  /** SYNs to PROBE_ADDRESS on this port are the queue probe's: verdict only, no event. */
  readonly probePort?: number;
}

export interface SynCaptureStats {
  readonly packets: number;
  readonly syns: number;
  readonly unparsed: number;
  readonly overruns: number;
  readonly probes: number;
}

export class SynCapture {
  readonly queueNum: number;
  readonly #worker: Worker;
  readonly #control = new Int32Array(new SharedArrayBuffer(8));
  readonly #counters = new Float64Array(new SharedArrayBuffer(8 * COUNTER_SLOTS));
  readonly #exited: Promise<void>;
  readonly #controlPort: MessagePort;
  #fd = -1;
  #stopped = false;

  private constructor(options: SynCaptureOptions) {
    this.queueNum = options.queueNum;
    const control = new MessageChannel();
    this.#controlPort = control.port1;
    this.#controlPort.unref();
    const data: SynCaptureThreadData = {
      queueNum: options.queueNum, copyBytes: options.copyBytes ?? 128, maxLen: options.maxLen ?? 4096,
      realtime: options.realtime ?? false, control: this.#control, counters: this.#counters, controlPort: control.port2, eventsPort: options.port,
      probePort: options.probePort,
    };
    const transferList = options.port === undefined ? [control.port2] : [control.port2, options.port];
    // execArgv: []: the parent's flags (e.g. --input-type) may not apply to a worker file.
    this.#worker = new Worker(THREAD_URL, { workerData: data, transferList, name: `tcpsplit-syn-q${options.queueNum}`, execArgv: [] });
    this.#exited = new Promise((resolve) => {
      this.#worker.once('exit', () => {
        this.#closeOrphanedSocket();
        this.#controlPort.close();
        resolve();
      });
    });
  }

  /** The thread is gone: close its queue socket if it could not (see the file comment). */
  #closeOrphanedSocket(): void {
    if (this.#fd < 0 || Atomics.load(this.#control, 1) === 1) return;
    const fd = this.#fd;
    this.#fd = -1;
    try {
      close(fd);
    } catch {
      // already closed: nothing more to release
    }
  }

  /** Starts the thread and resolves once its queue is bound; rejects with an NfqueueError otherwise. */
  static async start(options: SynCaptureOptions): Promise<SynCapture> {
    if ((options.onSyn === undefined) === (options.port === undefined)) {
      throw new NfqueueError(`SYN capture on queue ${options.queueNum}: give exactly one of onSyn and port`);
    }
    const capture = new SynCapture(options);
    const worker = capture.#worker;
    await new Promise<void>((resolve, reject) => {
      let ready = false;
      const timer = setTimeout(() => {
        void capture.stop();
        reject(new NfqueueError(`SYN capture on queue ${options.queueNum}: thread did not start within ${START_TIMEOUT_MS / 1000} s`));
      }, START_TIMEOUT_MS);
      worker.on('message', (m: ThreadMessage) => {
        if (m.type === 'syn') {
          const { type: _type, ...event } = m;
          options.onSyn?.(event);
        } else if (m.type === 'ready') {
          capture.#fd = m.fd;
          ready = true;
          clearTimeout(timer);
          resolve();
        } else {
          const err = new NfqueueError(`SYN capture on queue ${options.queueNum}: ${m.message}`);
          if (!ready) {
            clearTimeout(timer);
            reject(err);
          } else {
            options.onError?.(err);
          }
        }
      });
      worker.on('error', (e) => {
        const err = new NfqueueError(`SYN capture on queue ${options.queueNum}: thread failed: ${e.message}`, { cause: e });
        if (!ready) {
          clearTimeout(timer);
          reject(err);
        } else {
          options.onError?.(err);
        }
      });
    });
    return capture;
  }

  /**
   * Sends SYN events to `port` from now on (a replacement worker's port). The thread
   * switches within its wait period (50 ms when idle; every 64 wake-ups under load); events
   * in between go to the old port, where nobody may read them, so they are lost: the
   * connections fall back to connecting after accept.
   */
  retarget(port: MessagePort): void {
    const command: RetargetCommand = { type: 'port', port };
    this.#controlPort.postMessage(command, [port]);
  }

  stats(): SynCaptureStats {
    const c = this.#counters;
    return { packets: c[C.packets] ?? 0, syns: c[C.syns] ?? 0, unparsed: c[C.unparsed] ?? 0, overruns: c[C.overruns] ?? 0, probes: c[C.probes] ?? 0 };
  }

  /**
   * Terminates the thread as a crash would (no orderly close inside it); the exit handler
   * then closes its socket. For tests of the fail-open path.
   */
  async kill(): Promise<void> {
    this.#stopped = true;
    await this.#worker.terminate();
    await this.#exited;
  }

  /** Ends the loop (within ~50 ms), closes the queue (the kernel unbinds it) and waits for the thread. */
  async stop(): Promise<void> {
    if (!this.#stopped) {
      this.#stopped = true;
      Atomics.store(this.#control, 0, 1);
    }
    const timer = setTimeout(() => { void this.#worker.terminate(); }, STOP_TIMEOUT_MS);
    await this.#exited;
    clearTimeout(timer);
  }
}
