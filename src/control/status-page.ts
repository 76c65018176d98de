/**
 * The live status page, served on the metrics listener (like HAProxy's stats page):
 *   GET /             the page (HTML with its script and style inline: it loads nothing else)
 *   GET /status.json  the current RelayView
 *   GET /events       server-sent events: a `view` event with the RelayView every intervalMs
 *
 * One timer serves every live client: each tick takes one view and writes the same frame
 * to all of them, so the relay's cost does not grow with the number of open pages.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConfigError } from '../errors.js';
import type { ViewSource } from './relay-view.js';
import { STATUS_PAGE_CSP, STATUS_PAGE_HTML } from './status-page-html.js';

export interface StatusPageOptions {
  /** How often each live client gets a view. */
  readonly intervalMs: number;
  /** A comment line this often keeps an idle stream open through proxies while views fail or stall. */
  readonly heartbeatMs: number;
  /** Live clients at once; one more gets 503 (each costs a socket and a write per tick). */
  readonly maxClients: number;
  /** How long a browser waits before reconnecting a dropped stream (the SSE `retry:` field). */
  readonly retryMs: number;
  /** A client that has read nothing for this long (its socket buffer full) is dropped, freeing its slot. */
  readonly stalledClientMs: number;
}

export const defaultStatusPageOptions: StatusPageOptions = {
  intervalMs: 1000,
  heartbeatMs: 15_000,
  maxClients: 32,
  retryMs: 2000,
  stalledClientMs: 60_000,
};

/** The defaults with `options` over them; a value out of range is a ConfigError naming it. */
export function verifyStatusPageOptions(options: Partial<StatusPageOptions> = {}): StatusPageOptions {
  const merged = { ...defaultStatusPageOptions, ...options };
  const atLeast = (field: keyof StatusPageOptions, min: number): void => {
    const value = merged[field];
    if (!Number.isInteger(value) || value < min) {
      throw new ConfigError(`status page: ${field} must be an integer >= ${min} (got ${value})`);
    }
  };
  atLeast('intervalMs', 10);
  atLeast('heartbeatMs', 10);
  atLeast('maxClients', 1);
  atLeast('retryMs', 10);
  atLeast('stalledClientMs', 10);
  return merged;
}

/** What the page's event stream has done, computed when read. */
export interface StatusPageStats {
  readonly clients: number;
  /** View frames written, summed over clients. */
  readonly framesSent: number;
  /** Frames not written to a client whose socket had not drained the last one. */
  readonly framesSkipped: number;
  /** Clients refused at maxClients. */
  readonly refused: number;
  /** Clients dropped after stalledClientMs without draining. */
  readonly dropped: number;
}

interface Client {
  readonly res: ServerResponse;
  /** When its socket last stopped accepting writes; undefined while it drains. */
  stalledSince: number | undefined;
}

export class StatusPage {
  readonly #views: ViewSource;
  readonly #options: StatusPageOptions;
  readonly #clients = new Map<ServerResponse, Client>();
  #ticker: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #tickRunning = false;
  #closed = false;
  #framesSent = 0;
  #framesSkipped = 0;
  #refused = 0;
  #dropped = 0;

  constructor(views: ViewSource, options: Partial<StatusPageOptions> = {}) {
    this.#views = views;
    this.#options = verifyStatusPageOptions(options);
  }

  stats(): StatusPageStats {
    return {
      clients: this.#clients.size, framesSent: this.#framesSent, framesSkipped: this.#framesSkipped,
      refused: this.#refused, dropped: this.#dropped,
    };
  }

  /** Answers the request if it is one of the page's; false if not (the caller answers it). */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    if (req.method !== 'GET') return false;
    switch (pathOf(req.url)) {
      case '/':
        res.writeHead(200, {
          'content-type': 'text/html; charset=utf-8',
          'content-security-policy': STATUS_PAGE_CSP,
          'cache-control': 'no-store',
          'x-content-type-options': 'nosniff',
        }).end(STATUS_PAGE_HTML);
        return true;
      case '/status.json':
        this.#views.view().then(
          (view) => { res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(view)); },
          (err: unknown) => { res.writeHead(503, { 'content-type': 'text/plain' }).end(`relay view unavailable: ${String(err)}\n`); },
        );
        return true;
      case '/events':
        this.#openStream(res);
        return true;
      default:
        return false;
    }
  }

  /** Ends every stream and refuses new ones; the server's close() can then complete. */
  close(): void {
    this.#closed = true;
    this.#stopTimers();
    for (const { res } of this.#clients.values()) {
      // end() would wait for a stalled client to drain what is queued; it may never.
      if (res.writableNeedDrain) res.destroy();
      else res.end();
    }
    this.#clients.clear();
  }

  #openStream(res: ServerResponse): void {
    if (this.#closed) {
      res.writeHead(503, { 'content-type': 'text/plain' }).end('the relay is shutting down\n');
      return;
    }
    if (this.#clients.size >= this.#options.maxClients) {
      this.#refused++;
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': String(Math.ceil(this.#options.retryMs / 1000)) })
        .end(`too many live status pages: ${this.#options.maxClients} are open; close one, or poll /status.json\n`);
      return;
    }
    res.on('error', ignore);
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      // The stream owns its connection: once ended (server closing), the socket closes
      // instead of idling in keep-alive, so server.close() does not wait for it.
      connection: 'close',
      'x-accel-buffering': 'no',
    });
    res.write(`retry: ${this.#options.retryMs}\n\n`);
    const client: Client = { res, stalledSince: undefined };
    this.#clients.set(res, client);
    res.once('close', () => {
      this.#clients.delete(res);
      if (this.#clients.size === 0) this.#stopTimers();
    });
    this.#startTimers();
    // The first view now, not a tick later, so a fresh page fills at once.
    void this.#frame().then((frame) => { this.#write(client, frame); });
  }

  #startTimers(): void {
    if (this.#ticker !== undefined) return;
    this.#ticker = setInterval(() => { void this.#tick(); }, this.#options.intervalMs);
    this.#heartbeat = setInterval(() => { this.#beat(); }, this.#options.heartbeatMs);
  }

  #stopTimers(): void {
    clearInterval(this.#ticker);
    clearInterval(this.#heartbeat);
    this.#ticker = undefined;
    this.#heartbeat = undefined;
  }

  async #tick(): Promise<void> {
    // A view slower than the interval skips ticks rather than piling up requests to the workers.
    if (this.#tickRunning) return;
    const now = Date.now();
    let ready = 0;
    for (const client of this.#clients.values()) {
      if (!client.res.writableNeedDrain) { ready++; continue; }
      client.stalledSince ??= now;
      if (now - client.stalledSince >= this.#options.stalledClientMs) {
        this.#dropped++;
        this.#clients.delete(client.res);
        client.res.destroy();
      }
    }
    if (ready === 0) {
      this.#framesSkipped += this.#clients.size;
      return;
    }
    this.#tickRunning = true;
    let frame: string;
    try {
      frame = await this.#frame();
    } finally {
      this.#tickRunning = false;
    }
    for (const client of this.#clients.values()) this.#write(client, frame);
  }

  async #frame(): Promise<string> {
    try {
      return `event: view\ndata: ${JSON.stringify(await this.#views.view())}\n\n`;
    } catch (err) {
      return `event: unavailable\ndata: ${JSON.stringify({ message: String(err) })}\n\n`;
    }
  }

  /** One frame to one client, unless its socket still holds the last one (never an unbounded queue). */
  #write(client: Client, frame: string): void {
    const { res } = client;
    if (res.destroyed || res.writableEnded) return;
    if (res.writableNeedDrain) {
      this.#framesSkipped++;
      return;
    }
    client.stalledSince = undefined;
    this.#framesSent++;
    res.write(frame);
  }

  #beat(): void {
    for (const { res } of this.#clients.values()) {
      if (!res.destroyed && !res.writableEnded && !res.writableNeedDrain) res.write(': heartbeat\n\n');
    }
  }
}

function pathOf(url: string | undefined): string {
  const path = url ?? '/';
  const query = path.indexOf('?');
  return query === -1 ? path : path.slice(0, query);
}

function ignore(): void {
  // A client that went away mid-write: its 'close' removes it.
}
