import type { Socket } from 'node:net';
import type { Endpoint } from '../config/relay-config.js';
import { socketFd, setLinger, pendingSocketError, resetSocket } from '../sys/index.js';
import { errorCode, ConnectError, LegError, IdleTimeoutError, ConnectTimeoutError, PeerResetError, TcpsplitError } from '../errors.js';

/**
 * One split connection: the downstream leg (toward the client, or the previous relay)
 * and the upstream leg (toward the server, or the next relay), and the forwarding
 * between them.
 *
 * Forwarding rules (issue #2, docs/protocol.md "Connection semantics"):
 * - bytes are forwarded in order with backpressure both ways: a full write() pauses
 *   the reading side until 'drain', so a slow reader never makes us buffer without bound;
 * - half-close is kept per direction: EOF on one leg becomes end() (FIN) on the other,
 *   and the opposite direction keeps flowing;
 * - an abort is never turned into a clean end: an error or reset on either leg, or a
 *   timeout, resets the other leg (RST), so a broken download cannot look complete.
 *
 * Every way a leg ends (end, reset, destroy, error, timeout) ends in exactly one 'close',
 * and the connection in exactly one record (one log line, one slot freed): legs are reset
 * through resetSocket(), which always closes the fd, and a connection whose legs still
 * have not closed CLOSE_GRACE_MS after it failed is recorded anyway (issue #6).
 *
 * Hot-path listeners are module-level functions; per-connection state lives on the
 * sockets under symbols, so no closure is created per connection or per chunk.
 */

const kConn = Symbol('tcpsplit.connection');
const kPeer = Symbol('tcpsplit.peer');
const kClosed = Symbol('tcpsplit.closed');

interface Leg extends Socket {
  [kConn]: SplitConnection;
  [kPeer]: Leg;
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
  /** Bytes received from the downstream leg after any relay header. */
  readonly up: number;
  /** Bytes written to the downstream leg. */
  readonly down: number;
  readonly ms: number;
  readonly connectMs: number | undefined;
  readonly ttfbMs: number | undefined;
  readonly outcome: string;
  readonly error?: string;
  /** Legs that had not emitted 'close' when the connection was recorded (a leak). */
  readonly unclosed?: string;
}

export interface ConnectionTimeouts {
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
}

export class SplitConnection {
  readonly id: number;
  readonly kind: ConnectionKind;
  readonly downstream: Socket;
  /** Captured at accept: a closed socket no longer knows its peer. */
  readonly client: string;
  upstream: Socket | undefined;
  target: Endpoint | undefined;
  via = '-';
  /** Header bytes read from the downstream leg (accept kind), not counted as payload. */
  headerBytes = 0;

  readonly #startedAt = performance.now();
  #connectedAt: number | undefined;
  #firstByteAt: number | undefined;
  #failure: Error | undefined;
  #openLegs = 1;
  #recorded = false;
  #graceTimer: NodeJS.Timeout | undefined;
  readonly #timeouts: ConnectionTimeouts;
  readonly #onClose: (conn: SplitConnection, record: ConnectionRecord) => void;

  constructor(
    id: number,
    kind: ConnectionKind,
    downstream: Socket,
    timeouts: ConnectionTimeouts,
    onClose: (conn: SplitConnection, record: ConnectionRecord) => void,
  ) {
    this.id = id;
    this.kind = kind;
    this.downstream = downstream;
    this.client = `${downstream.remoteAddress ?? '?'}:${downstream.remotePort ?? '?'}`;
    this.#timeouts = timeouts;
    this.#onClose = onClose;
    const leg = downstream as Leg;
    leg[kConn] = this;
    downstream.on('error', onLegError);
    downstream.on('timeout', onLegTimeout);
    downstream.on('close', onLegClose);
    downstream.setNoDelay(true);
    downstream.setTimeout(timeouts.idleTimeoutMs);
    resetIfWeDie(downstream, true);
  }

  get failed(): boolean {
    return this.#failure !== undefined;
  }

  /**
   * Adopts the upstream leg, which may still be connecting. `onConnect` runs once it is
   * connected, before forwarding starts: it writes any preamble (relay header, early data).
   */
  attachUpstream(upstream: Socket, onConnect: (conn: SplitConnection) => void): void {
    if (this.#failure !== undefined) {
      // The downstream leg is already gone (or going): never forward into it.
      upstream.on('error', noop);
      resetSocket(upstream);
      return;
    }
    this.upstream = upstream;
    this.#openLegs++;
    const up = upstream as Leg;
    const down = this.downstream as Leg;
    up[kConn] = this;
    up[kPeer] = down;
    down[kPeer] = up;
    upstream.on('error', onLegError);
    upstream.on('timeout', onLegTimeout);
    upstream.on('close', onLegClose);
    upstream.setNoDelay(true);
    const begin = (): void => {
      if (this.#failure !== undefined) return;
      this.#connectedAt = performance.now();
      upstream.setTimeout(this.#timeouts.idleTimeoutMs);
      resetIfWeDie(upstream, true);
      try {
        onConnect(this);
      } catch (err) {
        this.fail(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      upstream.once('data', onFirstByte);
      startForwarding(down);
      startForwarding(up);
    };
    if (upstream.connecting) {
      upstream.setTimeout(this.#timeouts.connectTimeoutMs);
      upstream.once('connect', begin);
    } else {
      begin();
    }
  }

  get connectMs(): number | undefined {
    return this.#connectedAt === undefined ? undefined : this.#connectedAt - this.#startedAt;
  }

  /** Ends the connection with an error: every leg still open is reset, never closed cleanly. */
  fail(err: Error): void {
    this.#failure ??= err;
    resetSocket(this.downstream);
    if (this.upstream !== undefined) resetSocket(this.upstream);
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
    const legs = this.upstream === undefined ? [this.downstream] : [this.downstream, this.upstream];
    const unclosed = legs.filter((leg) => (leg as Leg)[kClosed] !== true);
    if (unclosed.length === 0) return;
    this.#failure ??= new LegError('the connection did not close');
    const names = unclosed.map((leg) => (leg === this.downstream ? 'downstream' : 'upstream')).join(',');
    for (const leg of unclosed) (leg as Leg)[kClosed] = true;
    this.#openLegs = 0;
    this.#record(names);
  }

  get upstreamConnected(): boolean {
    return this.#connectedAt !== undefined;
  }

  markFirstByte(): void {
    this.#firstByteAt ??= performance.now();
  }

  /** Called once per leg, on its 'close'. */
  legClosed(): void {
    if (--this.#openLegs > 0 || this.#recorded) return;
    this.#record(undefined);
  }

  #record(unclosed: string | undefined): void {
    this.#recorded = true;
    if (this.#graceTimer !== undefined) clearTimeout(this.#graceTimer);
    const now = performance.now();
    const down = this.downstream;
    const record: ConnectionRecord = {
      id: this.id,
      kind: this.kind,
      client: this.client,
      target: this.target === undefined ? '-' : `${this.target.host}:${this.target.port}`,
      via: this.via,
      up: Math.max(0, down.bytesRead - this.headerBytes),
      down: down.bytesWritten,
      ms: round(now - this.#startedAt),
      connectMs: this.#connectedAt === undefined ? undefined : round(this.#connectedAt - this.#startedAt),
      ttfbMs: this.#firstByteAt === undefined ? undefined : round(this.#firstByteAt - this.#startedAt),
      outcome: this.#failure === undefined ? 'ok' : errorCode(this.#failure),
      ...(this.#failure === undefined ? {} : { error: this.#failure.message }),
      ...(unclosed === undefined ? {} : { unclosed }),
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

function startForwarding(leg: Leg): void {
  leg.on('data', onLegData);
  leg.on('drain', onLegDrain);
  // A FIN that came while the next leg was still connecting has already emitted 'end'
  // (net.Socket emits it at EOF even with no reader): pass it on now.
  if (leg.readableEnded) onLegEnd.call(leg);
  else leg.on('end', onLegEnd);
  leg.resume();
}

function onLegData(this: Leg, chunk: Buffer): void {
  if (!this[kPeer].write(chunk)) this.pause();
}

function onLegDrain(this: Leg): void {
  this[kPeer].resume();
}

function onLegEnd(this: Leg): void {
  const reset = pendingSocketError(this);
  if (reset !== undefined) {
    this[kConn].fail(new PeerResetError(`${this === this[kConn].downstream ? 'downstream' : 'upstream'} leg was reset (${reset})`));
    return;
  }
  // FIN in one direction only: pass it on and keep the other direction open. The peer
  // may now close cleanly, so its close() must send FIN again, not RST.
  resetIfWeDie(this[kPeer], false);
  this[kPeer].end();
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

function onFirstByte(this: Leg): void {
  this[kConn].markFirstByte();
}

function onLegError(this: Leg, err: Error): void {
  const conn = this[kConn];
  const which = this === conn.downstream ? 'downstream' : 'upstream';
  const code = (err as NodeJS.ErrnoException).code;
  if (err instanceof TcpsplitError) conn.fail(err);
  else if (this !== conn.downstream && !conn.upstreamConnected) {
    conn.fail(new ConnectError(`cannot connect the next leg: ${err.message}`, { cause: err }));
  }
  else if (code === 'ECONNRESET' || code === 'EPIPE') conn.fail(new PeerResetError(`${which} leg was reset`, { cause: err }));
  else conn.fail(new LegError(`${which} leg failed: ${code ?? err.message}`, { cause: err }));
}

function onLegTimeout(this: Leg): void {
  const conn = this[kConn];
  if (this.connecting) conn.fail(new ConnectTimeoutError(`next leg did not connect within the connect timeout`));
  else conn.fail(new IdleTimeoutError(`no traffic on the ${this === conn.downstream ? 'downstream' : 'upstream'} leg within the idle timeout`));
}

function onLegClose(this: Leg): void {
  if (this[kClosed] === true) return;
  this[kClosed] = true;
  this[kConn].legClosed();
}
