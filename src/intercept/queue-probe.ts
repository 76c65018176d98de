/**
 * What the early-SYN queue adds to a SYN, measured live (issue 8 §4: "the queue's added
 * latency" as a metric).
 *
 * The kernel does not say how long a packet waited for its verdict: NFQA_TIMESTAMP is
 * absent for these SYNs (tried here on loopback: no packet carried one; most likely
 * because TCP stamps its packets with a monotonic departure time, which nfnetlink_queue
 * does not report), and netlink sockets give no receive timestamp. So the relay measures it the way
 * benchmarks/early-syn-queue.ts does, as a synthetic probe on loopback:
 *
 * - two listeners of its own on PROBE_ADDRESS (a loopback address of its own, so that its
 *   ports never take one a service on 127.0.0.1 expects to bind): `captured`, whose port early SYN's rules queue
 *   like a -L listener's (the capture threads give those SYNs their verdict and post no
 *   event: SynCaptureOptions.probePort), and `baseline`, which no rule touches;
 * - every `intervalMs` it connects to each, alternately, and reads tcpi_rtt from the
 *   client socket at 'connect': the kernel's RTT sample of the handshake, SYN sent to
 *   SYN-ACK received, free of the event loop's delay. The queue's cost is the captured
 *   connection's handshake minus the baseline's (floored at 0).
 *
 * One sample is a pair of loopback handshakes: nothing leaves the host, and no split
 * connection is made (the listeners close what they accept).
 */
import { createServer, connect, type AddressInfo, type Server } from 'node:net';
import { once } from 'node:events';
import { socketFd } from '../sys/tcp-socket.js';
import { tcpRtt } from '../sys/tcp-info.js';
import { PROBE_ADDRESS } from './syn-capture-protocol.js';

export interface QueueProbeSample {
  /** The captured handshake's RTT sample less the baseline's, microseconds (≥ 0). */
  readonly addedUs: number;
  readonly capturedUs: number;
  readonly baselineUs: number;
}

export class QueueProbe {
  readonly #captured: Server;
  readonly #baseline: Server;
  readonly #onSample: (sample: QueueProbeSample) => void;
  /** The port early SYN's rules must capture. */
  readonly capturedPort: number;
  readonly #baselinePort: number;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #closed = false;

  private constructor(captured: Server, baseline: Server, onSample: (sample: QueueProbeSample) => void) {
    this.#captured = captured;
    this.#baseline = baseline;
    this.#onSample = onSample;
    this.capturedPort = (captured.address() as AddressInfo).port;
    this.#baselinePort = (baseline.address() as AddressInfo).port;
  }

  /** Listens on two loopback ports; sampling starts with start(). */
  static async listen(onSample: (sample: QueueProbeSample) => void): Promise<QueueProbe> {
    const listener = async (): Promise<Server> => {
      const server = createServer((s) => { s.on('error', noop); s.destroy(); });
      // An accept that fails (EMFILE near the descriptor limit) costs a sample, not the relay.
      server.on('error', noop);
      server.listen(0, PROBE_ADDRESS);
      await once(server, 'listening');
      server.unref();
      return server;
    };
    const captured = await listener();
    try {
      return new QueueProbe(captured, await listener(), onSample);
    } catch (err) {
      captured.close();
      throw err;
    }
  }

  /** Samples now, then every `intervalMs`. */
  start(intervalMs: number): void {
    this.stopSampling();
    void this.sample().catch(noop);
    this.#timer = setInterval(() => { void this.sample().catch(noop); }, intervalMs);
    this.#timer.unref();
  }

  stopSampling(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One sample (skipped if one is still running, or once closed); undefined if a handshake could not be read. */
  async sample(): Promise<QueueProbeSample | undefined> {
    if (this.#running || this.#closed) return undefined;
    this.#running = true;
    try {
      const baselineUs = await handshakeUs(this.#baselinePort);
      const capturedUs = await handshakeUs(this.capturedPort);
      // Closed while the handshakes ran: the relay is stopping, nobody reads the metric.
      if (baselineUs === undefined || capturedUs === undefined || this.closed) return undefined;
      const sample = { addedUs: Math.max(0, capturedUs - baselineUs), capturedUs, baselineUs };
      this.#onSample(sample);
      return sample;
    } finally {
      this.#running = false;
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    this.#closed = true;
    this.stopSampling();
    this.#captured.close();
    this.#baseline.close();
  }
}

/** tcpi_rtt of a fresh loopback connection to `port`, read at 'connect'; undefined on any failure. */
async function handshakeUs(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: PROBE_ADDRESS });
    const timer = setTimeout(() => { socket.destroy(); resolve(undefined); }, PROBE_TIMEOUT_MS);
    timer.unref();
    socket.on('error', () => { clearTimeout(timer); resolve(undefined); });
    socket.once('connect', () => {
      clearTimeout(timer);
      const fd = socketFd(socket);
      let rtt: number | undefined;
      try {
        rtt = fd === undefined ? undefined : tcpRtt(fd).rttUs;
      } catch {
        rtt = undefined;
      }
      socket.destroy();
      resolve(rtt);
    });
  });
}

const PROBE_TIMEOUT_MS = 1000;

function noop(): void { /* a probe connection's errors */ }
