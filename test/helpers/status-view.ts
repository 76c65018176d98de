import { get as httpGet, type ClientRequest, type IncomingMessage } from 'node:http';
import type { ConnectionView, ErrorView, RelayView, ViewSource } from '../../src/control/relay-view.js';

/**
 * A stand-in for the supervisor's views: a relay with one peer 'rs' (pool of 4), whose
 * byte counts grow with time and which reports a refused target `errorAfterMs` after it
 * was made. Numbers follow the clock, not the number of calls, so any reader sees the same story.
 */
export function changingViews(options: { errorAfterMs?: number; bytesPerSecond?: number; restartEveryMs?: number } = {}): ViewSource & { calls: number } {
  const startedAt = Date.now() - 3_600_000;
  const made = Date.now();
  const errorAfterMs = options.errorAfterMs ?? 1500;
  const rate = options.bytesPerSecond ?? 4_000_000;
  const source = {
    calls: 0,
    view(): Promise<RelayView> {
      source.calls++;
      const at = Date.now();
      const elapsedMs = at - made;
      // restartEveryMs: the relay restarts that often, with no pause, and counts its bytes from zero again.
      const countingMs = options.restartEveryMs === undefined ? elapsedMs : elapsedMs % options.restartEveryMs;
      const down = Math.round(rate * countingMs / 1000);
      const up = Math.round(down / 40);
      const connections: ConnectionView[] = [
        { id: 7, worker: 0, kind: 'forward', client: '127.0.0.1:51000', target: '10.20.0.5:443', via: 'rs', ageMs: 95_000 + elapsedMs, up, down },
        { id: 9, worker: 1, kind: 'forward', client: '127.0.0.1:51002', target: '10.20.0.6:22', via: 'rs', ageMs: 4_000 + elapsedMs, up: 2_100, down: 5_300 },
      ];
      const recentErrors: ErrorView[] = elapsedMs < errorAfterMs ? [] : [{
        at: made + errorAfterMs, code: 'TCPSPLIT_ERR_CONNECT_REFUSED', worker: 1,
        message: 'connect to 10.20.0.9:8080 refused (ECONNREFUSED)',
      }];
      return Promise.resolve({
        at,
        startedAt,
        features: { earlySyn: false, pool: true, turbo: true },
        logLevel: 'info',
        workers: [
          { index: 0, threadId: 1, alive: true, open: 1, accepted: 120, loopLagMs: 1.4 },
          { index: 1, threadId: 2, alive: true, open: 1, accepted: 117, loopLagMs: 2.2 },
        ],
        peers: [{
          name: 'rs', endpoint: '192.0.2.10:7000',
          pool: { enabled: true, size: 4, low: 2, high: 8, maxIdleMs: 60_000, takes: 230, misses: 7, stale: 1, refillFailures: 0 },
          rttMs: 81.3, cwnd: 214, turbo: 'initcwnd 64 initrwnd 64 on 10.20.0.0/16',
        }],
        routes: [{ cidr: '10.20.0.0/16', via: 'rs' }, { cidr: '0.0.0.0/0', via: 'direct' }],
        listeners: ['-L 127.0.0.1:8080 -> 10.20.0.5:443'],
        open: connections.length,
        connections,
        bytes: { up: 1_000 + up, down: 50_000 + down },
        closed: 235,
        failed: recentErrors.length,
        recentErrors,
      });
    },
  };
  return source;
}

export interface SseEvent {
  /** The `event:` field; 'message' when absent. */
  readonly event: string;
  readonly data: string;
}

/**
 * An open GET /events: its events as they come, its comment lines, and its `retry:` field.
 * Parses the stream incrementally (events may span chunks).
 */
export class SseReader {
  readonly events: SseEvent[] = [];
  readonly comments: string[] = [];
  retry: number | undefined;
  ended = false;
  readonly response: IncomingMessage;
  readonly #request: ClientRequest;
  #buffer = '';
  readonly #waiters = new Set<() => void>();

  private constructor(request: ClientRequest, response: IncomingMessage) {
    this.#request = request;
    this.response = response;
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => { this.#feed(chunk); });
    response.on('end', () => { this.ended = true; this.#wake(); });
    response.on('error', () => { this.ended = true; this.#wake(); });
    response.on('close', () => { this.ended = true; this.#wake(); });
  }

  static open(url: string): Promise<SseReader> {
    return new Promise((resolve, reject) => {
      const request = httpGet(url, { headers: { accept: 'text/event-stream' } }, (response) => { resolve(new SseReader(request, response)); });
      request.on('error', reject);
    });
  }

  /** Waits until `cond` holds, re-checked on every event; throws after `timeoutMs`. */
  async until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    if (cond()) return;
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (!cond()) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`event stream: ${what} did not happen in ${timeoutMs} ms (${this.events.length} events, ended ${this.ended})`));
      }, timeoutMs);
      this.#waiters.add(check);
    });
  }

  /** The client goes away without a word (a closed browser tab). */
  destroy(): void {
    this.#request.destroy();
  }

  #feed(chunk: string): void {
    this.#buffer += chunk;
    let end: number;
    while ((end = this.#buffer.indexOf('\n\n')) !== -1) {
      const block = this.#buffer.slice(0, end);
      this.#buffer = this.#buffer.slice(end + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) this.comments.push(line.slice(1).trim());
        else if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
        else if (line.startsWith('retry: ')) this.retry = Number(line.slice(7));
      }
      if (data.length > 0) this.events.push({ event, data: data.join('\n') });
    }
    this.#wake();
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }
}
