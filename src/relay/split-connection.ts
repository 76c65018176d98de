import type { Socket } from 'node:net';
import type { Endpoint } from '../config/relay-config.js';
import { socketFd, setLinger, resetSocket } from '../sys/index.js';
import { unmapIpv4 } from '../net/ip-address.js';
import {
  errorCode, ConnectError, LegError, IdleTimeoutError, ConnectTimeoutError, PeerResetError, TcpsplitError, UnpairedError,
} from '../errors.js';
import { NO_FORWARDING, type Direction, type Forwarder, type Forwarding, type ForwardingSink } from '../dataplane/forwarder.js';
import { streamForwarder } from '../dataplane/stream-forwarder.js';

/**
 * One split connection: the downstream half (toward the client, or the previous relay)
 * and the upstream half (toward the server, or the next relay), paired in either order:
 * - downstream first: a socket is accepted, and its next leg is dialled after it (today);
 * - upstream first: an early leg, already connecting or connected (early SYN, a pooled
 *   connection), waits for the accepted socket.
 * Forwarding starts when both halves are there and the upstream one is connected; the
 * bytes are moved by a Forwarder (src/dataplane/), which also counts them.
 *
 * Its identity is fixed when it is created (id, kind, client, and the target when it is
 * known then); a target learned later from a relay header is set once, with setTarget(),
 * and `via` comes with the upstream half. Nothing outside mutates it.
 *
 * Rules (issue #2, docs/protocol.md "Connection semantics"):
 * - half-close is kept per direction: EOF on one half becomes end() (FIN) on the other,
 *   and the opposite direction keeps flowing;
 * - an abort is never turned into a clean end: an error or reset on either half, or a
 *   timeout, resets the other half (RST), so a broken download cannot look complete;
 * - SO_LINGER {1, 0} while a half may still have to carry data (resetIfWeDie);
 * - a half that never gets its partner is reset after `pairTimeoutMs` (UnpairedError).
 *
 * Every way a half ends (end, reset, destroy, error, timeout) ends in exactly one 'close',
 * and the connection in exactly one record (one log line, one slot freed): halves are
 * reset through resetSocket(), which always closes the fd, and a connection whose halves
 * still have not closed CLOSE_GRACE_MS after it failed is recorded anyway (issue #6).
 *
 * Lifecycle listeners are module-level functions; the connection lives on its sockets
 * under a symbol, so no closure is created per connection or per chunk.
 */

const kConn = Symbol('tcpsplit.connection');
const kClosed = Symbol('tcpsplit.closed');

interface Leg extends Socket {
  [kConn]: SplitConnection;
  [kClosed]?: true;
}

/**
 * How long a failed connection's legs may take to emit 'close'. A destroyed socket
 * closes within the same event-loop turn, so this only fires when a leg is stuck (a
 * bug, or a Node/libuv state we did not foresee): the connection is then recorded with
 * the legs that never closed, and its slot is freed instead of being held forever.
 */
export const CLOSE_GRACE_MS = 2000;

export type ConnectionKind = 'forward' | 'accept' | 'intercept';

export interface ConnectionRecord {
  readonly id: number;
  readonly kind: ConnectionKind;
  readonly client: string;
  readonly target: string;
  readonly via: string;
  /** Payload bytes taken from the downstream leg (after any relay header), from the forwarder. */
  readonly up: number;
  /** Payload bytes written to the downstream leg, from the forwarder. */
  readonly down: number;
  readonly ms: number;
  readonly connectMs: number | undefined;
  readonly ttfbMs: number | undefined;
  readonly outcome: string;
  readonly error?: string;
  /** Legs that had not emitted 'close' when the connection was recorded (a leak). */
  readonly unclosed?: string;
  /** A pooled upstream half found dead on first use was replaced this many times. */
  readonly retries?: number;
}

export interface ConnectionTimeouts {
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /**
   * How long the first half waits for its partner; unset: no limit of its own (the
   * caller's header and connect timeouts bound the wait).
   */
  readonly pairTimeoutMs?: number;
}

/** Writes what goes ahead of the client's bytes once the upstream half is connected. */
export type Preamble = (early: Buffer | null) => void;

/**
 * How a pooled upstream half that turns out dead on first use is replaced (issue 9;
 * src/pool/first-use.ts decides when it may be). While it may, the connection keeps a
 * copy of the client bytes sent up (at most RETRY_JOURNAL_BYTES); if the half is reset,
 * ends, or stays silent before any byte came back and before the peer acknowledged
 * anything, a fresh half from reopen() takes its place and gets those bytes in its
 * preamble. Once, and invisibly to the client: nothing has been sent down yet.
 */
export interface UpstreamRetry {
  /** True while the peer has acknowledged nothing written since the take. */
  unacknowledged(): boolean;
  /** Calls back once: 'alive' (acknowledged in time: probation over) or 'silent'. */
  watch(onVerdict: (verdict: 'alive' | 'silent') => void): void;
  /** A fresh upstream half (connecting), for the same target; throws like a LegFactory. */
  reopen(): { readonly socket: Socket; readonly via: string; readonly preamble: Preamble };
  dispose(): void;
}

/** Client bytes kept while a pooled half is on probation; past this it is no longer replaceable. */
export const RETRY_JOURNAL_BYTES = 256 * 1024;

export interface SplitConnectionOptions {
  readonly id: number;
  readonly kind: ConnectionKind;
  /** The client's address:port, known at accept (or from the SYN's 4-tuple). */
  readonly client: string;
  /** Where it goes, when known at creation (a forward listener, early SYN). */
  readonly target?: Endpoint;
  readonly timeouts: ConnectionTimeouts;
  /** Default: streamForwarder (Node streams). */
  readonly forwarder?: Forwarder;
  readonly onClose: (conn: SplitConnection, record: ConnectionRecord) => void;
}

/** A socket's peer as a record names it; capture it at accept: a closed socket forgets it. */
export function clientOf(socket: Socket): string {
  return `${socket.remoteAddress === undefined ? '?' : unmapIpv4(socket.remoteAddress)}:${socket.remotePort ?? '?'}`;
}

export class SplitConnection implements ForwardingSink {
  readonly id: number;
  readonly kind: ConnectionKind;
  readonly client: string;
  #target: Endpoint | undefined;
  #via = '-';
  #downstream: Leg | undefined;
  #upstream: Leg | undefined;
  #preamble: Preamble | undefined;
  #forwarding: Forwarding | undefined;
  #retry: UpstreamRetry | undefined;
  /** The early bytes the pooled half's preamble carried, kept for its replacement. */
  #retryEarly: Buffer | null = null;
  #retries = 0;

  readonly #startedAt = performance.now();
  #connectedAt: number | undefined;
  #failure: Error | undefined;
  #openLegs = 0;
  #recorded = false;
  #graceTimer: NodeJS.Timeout | undefined;
  #pairTimer: NodeJS.Timeout | undefined;
  readonly #timeouts: ConnectionTimeouts;
  readonly #forwarder: Forwarder;
  readonly #onClose: (conn: SplitConnection, record: ConnectionRecord) => void;

  constructor(options: SplitConnectionOptions) {
    this.id = options.id;
    this.kind = options.kind;
    this.client = options.client;
    this.#target = options.target;
    this.#timeouts = options.timeouts;
    this.#forwarder = options.forwarder ?? streamForwarder;
    this.#onClose = options.onClose;
  }

  /** Today's path: a connection created around its accepted socket. */
  static accepted(downstream: Socket, options: Omit<SplitConnectionOptions, 'client'>): SplitConnection {
    const conn = new SplitConnection({ ...options, client: clientOf(downstream) });
    conn.attachDownstream(downstream);
    return conn;
  }

  get target(): Endpoint | undefined {
    return this.#target;
  }

  /** The peer relay's name, 'direct', or '-' before the upstream half came. */
  get via(): string {
    return this.#via;
  }

  get downstream(): Socket | undefined {
    return this.#downstream;
  }

  get upstream(): Socket | undefined {
    return this.#upstream;
  }

  /** Payload bytes moved so far each way (read when asked: the forwarder counts them). */
  get progress(): { readonly up: number; readonly down: number } {
    const stats = this.#forwarding ?? NO_FORWARDING;
    return { up: stats.upBytes, down: stats.downBytes };
  }

  /** performance.now() when the connection was created. */
  get startedAt(): number {
    return this.#startedAt;
  }

  get failed(): boolean {
    return this.#failure !== undefined;
  }

  get paired(): boolean {
    return this.#downstream !== undefined && this.#upstream !== undefined;
  }

  get upstreamConnected(): boolean {
    return this.#connectedAt !== undefined;
  }

  get connectMs(): number | undefined {
    return this.#connectedAt === undefined ? undefined : this.#connectedAt - this.#startedAt;
  }

  /** Sets a target learned after creation (from a relay header). Once only. */
  setTarget(target: Endpoint): void {
    if (this.#target !== undefined) throw new Error(`connection ${this.id}: the target is already set`);
    this.#target = target;
  }

  /** Adopts the accepted socket (toward the client). */
  attachDownstream(downstream: Socket): void {
    if (this.#downstream !== undefined) throw new Error(`connection ${this.id}: a downstream half is already attached`);
    if (this.#discardIfFailed(downstream)) return;
    const leg = this.#adopt(downstream);
    this.#downstream = leg;
    downstream.setTimeout(this.#timeouts.idleTimeoutMs);
    resetIfWeDie(downstream, true);
    this.#paired();
  }

  /**
   * Adopts the upstream half, which may still be connecting. `preamble` runs once it is
   * connected and paired, before forwarding starts: it writes the relay header and any
   * client bytes already buffered (`early`). `via` names the next hop in the record.
   */
  attachUpstream(upstream: Socket, via: string, preamble?: Preamble, retry?: UpstreamRetry): void {
    if (this.#upstream !== undefined) throw new Error(`connection ${this.id}: an upstream half is already attached`);
    if (this.#discardIfFailed(upstream)) {
      retry?.dispose();
      return;
    }
    this.#retry = retry;
    this.#setUpstream(upstream, via, preamble);
    this.#paired();
  }

  /** How many times a dead pooled upstream half was replaced (0 or 1). */
  get retries(): number {
    return this.#retries;
  }

  #setUpstream(upstream: Socket, via: string, preamble: Preamble | undefined): void {
    const leg = this.#adopt(upstream);
    this.#upstream = leg;
    this.#via = via;
    this.#preamble = preamble;
    if (upstream.connecting) {
      upstream.setTimeout(this.#timeouts.connectTimeoutMs);
      upstream.once('connect', onUpstreamConnect);
    } else {
      this.upstreamConnect();
    }
  }

  /**
   * @internal The upstream half failed, ended or stayed silent: replaces it if it is a
   * pooled half still on probation (UpstreamRetry). False: handle the failure as usual.
   */
  retryUpstream(): boolean {
    const retry = this.#retry;
    const forwarding = this.#forwarding;
    const old = this.#upstream;
    if (retry === undefined || forwarding === undefined || old === undefined || this.#failure !== undefined) return false;
    const unacknowledged = retry.unacknowledged();
    const journal = forwarding.takeJournal?.();
    const early = Buffer.concat([this.#retryEarly ?? Buffer.alloc(0), journal ?? Buffer.alloc(0)]);
    this.#endProbation();
    if (forwarding.firstByteAt !== undefined || !unacknowledged || journal === undefined || forwarding.replaceUpstream === undefined) return false;
    // The dead half leaves the connection: its events no longer count, and it is reset.
    old.off('error', onLegError);
    old.off('timeout', onLegTimeout);
    old.off('close', onLegClose);
    old.off('connect', onUpstreamConnect);
    old.on('error', noop);
    old[kClosed] = true;
    this.#openLegs--;
    resetSocket(old);
    this.#upstream = undefined;
    let next: ReturnType<UpstreamRetry['reopen']>;
    try {
      next = retry.reopen();
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
      return true;
    }
    this.#retries++;
    this.#connectedAt = undefined;
    // Queued by Node until the new half connects, ahead of anything forwarded after it.
    next.preamble(early.length > 0 ? early : null);
    this.#setUpstream(next.socket, next.via, undefined);
    forwarding.replaceUpstream(next.socket);
    // The client's FIN went to the dead half: the new one gets it after the replayed bytes.
    if (this.#downstream?.readableEnded === true) this.forwardingEnded('up');
    return true;
  }

  #endProbation(): void {
    const retry = this.#retry;
    if (retry === undefined) return;
    retry.dispose();
    this.#forwarding?.takeJournal?.();
    this.#retry = undefined;
    this.#retryEarly = null;
  }

  /** @internal The upstream half is connected (or came connected). */
  upstreamConnect(): void {
    const up = this.#upstream;
    if (this.#failure !== undefined || up === undefined || this.#connectedAt !== undefined) return;
    this.#connectedAt = performance.now();
    up.setTimeout(this.#timeouts.idleTimeoutMs);
    resetIfWeDie(up, true);
    this.#begin();
  }

  /** @internal The probation deadline of a pooled upstream half. */
  probationVerdict(verdict: 'alive' | 'silent'): void {
    if (this.#retry === undefined) return;
    if (verdict === 'alive' || this.#forwarding?.firstByteAt !== undefined) this.#endProbation();
    else if (!this.retryUpstream()) this.fail(new PeerResetError('pooled peer leg stayed silent and could not be replaced'));
  }

  #adopt(socket: Socket): Leg {
    const leg = socket as Leg;
    leg[kConn] = this;
    this.#openLegs++;
    socket.on('error', onLegError);
    socket.on('timeout', onLegTimeout);
    socket.on('close', onLegClose);
    socket.setNoDelay(true);
    return leg;
  }

  /** A half that comes after the connection failed is reset at once: never forward into it. */
  #discardIfFailed(socket: Socket): boolean {
    if (this.#failure === undefined) return false;
    socket.on('error', noop);
    resetSocket(socket);
    return true;
  }

  /** Arms the pairing timer while one half waits, clears it once both are there. */
  #paired(): void {
    if (this.paired) {
      if (this.#pairTimer !== undefined) clearTimeout(this.#pairTimer);
      this.#pairTimer = undefined;
      this.#begin();
      return;
    }
    const ms = this.#timeouts.pairTimeoutMs;
    if (ms !== undefined && this.#pairTimer === undefined) {
      this.#pairTimer = setTimeout(pairTimedOut, ms, this);
      this.#pairTimer.unref();
    }
  }

  /**
   * The downstream half is a peer's authenticated idle (pooled) connection: it waits for
   * its TARGET frame as long as its sender keeps it, so the pairing backstop, which counts
   * from accept, no longer applies (the target source bounds the wait).
   */
  waitForUpstream(): void {
    if (this.#pairTimer !== undefined) clearTimeout(this.#pairTimer);
    this.#pairTimer = undefined;
  }

  /** @internal The pairing timer fired. */
  pairTimedOut(): void {
    this.#pairTimer = undefined;
    if (this.paired || this.#failure !== undefined) return;
    const missing = this.#downstream === undefined ? 'downstream (accepted)' : 'upstream (next leg)';
    this.fail(new UnpairedError(`the ${missing} half did not come within ${this.#timeouts.pairTimeoutMs ?? 0} ms`));
  }

  #begin(): void {
    const down = this.#downstream;
    const up = this.#upstream;
    if (this.#failure !== undefined || this.#forwarding !== undefined || down === undefined || up === undefined) return;
    if (this.#connectedAt === undefined) return;
    const forwarding = this.#forwarder.open(down, up, this);
    this.#forwarding = forwarding;
    try {
      const early = forwarding.takeEarly();
      const retry = this.#retry;
      if (retry !== undefined) {
        if (forwarding.journalUp === undefined || forwarding.replaceUpstream === undefined) this.#endProbation();
        else {
          this.#retryEarly = early;
          forwarding.journalUp(RETRY_JOURNAL_BYTES);
        }
      }
      this.#preamble?.(early);
      this.#retry?.watch((verdict) => { this.probationVerdict(verdict); });
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    forwarding.start();
  }

  /** @internal ForwardingSink: FIN in one direction only; pass it on and keep the other open. */
  forwardingEnded(direction: Direction): void {
    if (direction === 'down' && this.retryUpstream()) return;
    const to = direction === 'up' ? this.#upstream : this.#downstream;
    if (to === undefined) return;
    // The peer may now close cleanly, so its close() must send FIN again, not RST.
    resetIfWeDie(to, false);
    to.end();
  }

  /** @internal ForwardingSink: a reset seen as EOF is passed on as a reset. */
  forwardingReset(direction: Direction, reason: string): void {
    if (direction === 'down' && this.retryUpstream()) return;
    this.fail(new PeerResetError(`${direction === 'up' ? 'downstream' : 'upstream'} leg was reset (${reason})`));
  }

  /** Ends the connection with an error: every half still open is reset, never closed cleanly. */
  fail(err: Error): void {
    this.#failure ??= err;
    this.#endProbation();
    if (this.#pairTimer !== undefined) clearTimeout(this.#pairTimer);
    this.#pairTimer = undefined;
    if (this.#downstream !== undefined) resetSocket(this.#downstream);
    if (this.#upstream !== undefined) resetSocket(this.#upstream);
    if (this.#openLegs === 0 && !this.#recorded) {
      this.#record(undefined);
      return;
    }
    if (this.#graceTimer === undefined && !this.#recorded) {
      this.#graceTimer = setTimeout(abandonConnection, CLOSE_GRACE_MS, this);
      this.#graceTimer.unref();
    }
  }

  /**
   * Records the connection now, even if some leg has not emitted 'close': the safety
   * net behind fail(), and the last step of a drain. A 'close' that comes later is ignored.
   */
  abandon(): void {
    if (this.#recorded) return;
    const legs = [this.#downstream, this.#upstream].filter((leg) => leg !== undefined);
    const unclosed = legs.filter((leg) => leg[kClosed] !== true);
    if (unclosed.length === 0) return;
    this.#failure ??= new LegError('the connection did not close');
    const names = unclosed.map((leg) => (leg === this.#downstream ? 'downstream' : 'upstream')).join(',');
    for (const leg of unclosed) leg[kClosed] = true;
    this.#openLegs = 0;
    this.#record(names);
  }

  /** @internal Called once per leg, on its 'close'. */
  legClosed(): void {
    if (--this.#openLegs > 0 || this.#recorded) return;
    // A lone half that closed before its partner came (e.g. a pooled leg the server closed).
    this.#failure ??= this.paired ? undefined : new UnpairedError('a half closed before its partner came');
    if (this.#pairTimer !== undefined) clearTimeout(this.#pairTimer);
    this.#record(undefined);
  }

  /** @internal Names a leg in messages. */
  which(leg: Socket): 'downstream' | 'upstream' {
    return leg === this.#downstream ? 'downstream' : 'upstream';
  }

  #record(unclosed: string | undefined): void {
    this.#recorded = true;
    this.#endProbation();
    if (this.#graceTimer !== undefined) clearTimeout(this.#graceTimer);
    const now = performance.now();
    const stats = this.#forwarding ?? NO_FORWARDING;
    const target = this.#target;
    const record: ConnectionRecord = {
      id: this.id,
      kind: this.kind,
      client: this.client,
      target: target === undefined ? '-' : `${target.host}:${target.port}`,
      via: this.#via,
      up: stats.upBytes,
      down: stats.downBytes,
      ms: round(now - this.#startedAt),
      connectMs: this.#connectedAt === undefined ? undefined : round(this.#connectedAt - this.#startedAt),
      ttfbMs: stats.firstByteAt === undefined ? undefined : round(stats.firstByteAt - this.#startedAt),
      outcome: this.#failure === undefined ? 'ok' : errorCode(this.#failure),
      ...(this.#failure === undefined ? {} : { error: this.#failure.message }),
      ...(unclosed === undefined ? {} : { unclosed }),
      ...(this.#retries === 0 ? {} : { retries: this.#retries }),
    };
    this.#onClose(this, record);
  }
}

function noop(): void { /* errors of a leg being discarded */ }

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function abandonConnection(conn: SplitConnection): void {
  conn.abandon();
}

function pairTimedOut(conn: SplitConnection): void {
  conn.pairTimedOut();
}

function onUpstreamConnect(this: Leg): void {
  this[kConn].upstreamConnect();
}

/**
 * SO_LINGER {1, 0} while a leg may still have to carry data: if this process dies
 * (crash, SIGKILL, OOM), the kernel closes the socket with RST rather than FIN, so a
 * download cut short by our death cannot look complete to the client or the server.
 * Turned off just before we end() the leg on purpose. Without FFI this is skipped.
 */
function resetIfWeDie(socket: Socket, on: boolean): void {
  const fd = socketFd(socket);
  if (fd === undefined) return;
  try {
    setLinger(fd, on, 0);
  } catch {
    // No FFI, or the socket is already gone: nothing to protect.
  }
}

function onLegError(this: Leg, err: Error): void {
  const conn = this[kConn];
  const which = conn.which(this);
  if (which === 'upstream' && conn.retryUpstream()) return;
  const code = (err as NodeJS.ErrnoException).code;
  if (err instanceof TcpsplitError) conn.fail(err);
  else if (which === 'upstream' && !conn.upstreamConnected) {
    conn.fail(new ConnectError(`cannot connect the next leg: ${err.message}`, { cause: err }));
  }
  else if (code === 'ECONNRESET' || code === 'EPIPE') conn.fail(new PeerResetError(`${which} leg was reset`, { cause: err }));
  else conn.fail(new LegError(`${which} leg failed: ${code ?? err.message}`, { cause: err }));
}

function onLegTimeout(this: Leg): void {
  const conn = this[kConn];
  if (this.connecting) conn.fail(new ConnectTimeoutError(`next leg did not connect within the connect timeout`));
  else conn.fail(new IdleTimeoutError(`no traffic on the ${conn.which(this)} leg within the idle timeout`));
}

function onLegClose(this: Leg): void {
  if (this[kClosed] === true) return;
  if (this[kConn].which(this) === 'upstream' && this[kConn].retryUpstream()) return;
  this[kClosed] = true;
  this[kConn].legClosed();
}
