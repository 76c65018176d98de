/**
 * A pooled connection on its first use, until it shows a sign of life (issue 9: "a pooled
 * connection that turns out dead on use is retried on a fresh connection, without the
 * client noticing and without duplicating bytes").
 *
 * The take's liveness check (liveness.ts) cannot see a reset still in flight, nor a peer
 * that vanished without one. So after the TARGET frame leaves, the leg is on probation:
 * - it may be replaced while the peer's kernel has acknowledged nothing written on take
 *   (tcpi_bytes_acked has not moved since the take) and no byte came back. A peer that never
 *   acknowledged the TARGET frame never read it, so nothing reached the server: replaying
 *   the frame's client bytes on a fresh leg duplicates nothing. Once anything is
 *   acknowledged, a reset is passed on as a reset, as on any leg;
 * - a leg with no acknowledgement by the deadline (a few RTTs and one minimum RTO) is
 *   silent: dead without a reset. It is replaced too.
 *
 * The acknowledgement must be read before the socket's fd closes, and Node closes it
 * inside destroy(), before 'error' is emitted. So while on probation the socket's
 * destroy is wrapped to read TCP_INFO first; dispose() removes the wrapper.
 */
import { Socket } from 'node:net';
import { socketFd, tcpInfo } from '../sys/index.js';

/** The kernel's minimum RTO: a lost TARGET segment is resent after it. */
const MIN_RTO_MS = 200;
/** The deadline never comes sooner than this (a loaded event loop reads late). */
export const MIN_SILENT_MS = 500;

export type Verdict = 'alive' | 'silent';

export class FirstUse {
  readonly #socket: Socket;
  readonly #baseline: number | undefined;
  readonly #deadlineMs: number;
  #ackedAtDestroy: boolean | undefined;
  #timer: NodeJS.Timeout | undefined;
  #disposed = false;

  /** Call right before writing the TARGET frame. */
  constructor(socket: Socket) {
    this.#socket = socket;
    const info = readInfo(socket);
    this.#baseline = info?.bytesAcked;
    const rttMs = info === undefined ? 0 : info.rttUs / 1000;
    this.#deadlineMs = Math.max(MIN_SILENT_MS, Math.ceil(3 * rttMs + MIN_RTO_MS));
    if (this.#baseline !== undefined) {
      // Own property over the prototype's method: Node's read path calls stream.destroy(err).
      const wrapped = (err?: Error): Socket => {
        this.#ackedAtDestroy ??= this.#ackedNow();
        return Socket.prototype.destroy.call(socket, err);
      };
      socket.destroy = wrapped;
    }
  }

  get deadlineMs(): number {
    return this.#deadlineMs;
  }

  /**
   * True while nothing written since the take was acknowledged (so the leg may be replaced
   * if it is found dead). False when the kernel cannot tell (no fd, an old kernel).
   */
  unacknowledged(): boolean {
    if (this.#baseline === undefined) return false;
    const acked = this.#ackedAtDestroy ?? this.#ackedNow();
    return acked === false;
  }

  /** Calls `onVerdict` once, at the deadline: 'alive' if the peer acknowledged by then. */
  watch(onVerdict: (verdict: Verdict) => void): void {
    if (this.#disposed || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#disposed) return;
      onVerdict(this.unacknowledged() ? 'silent' : 'alive');
    }, this.#deadlineMs);
    this.#timer.unref();
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (Object.hasOwn(this.#socket, 'destroy')) delete (this.#socket as { destroy?: unknown }).destroy;
  }

  /** undefined when the kernel cannot be asked (fd gone); true/false otherwise. */
  #ackedNow(): boolean | undefined {
    const acked = readInfo(this.#socket)?.bytesAcked;
    if (acked === undefined || this.#baseline === undefined) return undefined;
    return acked > this.#baseline;
  }
}

function readInfo(socket: Socket): ReturnType<typeof tcpInfo> | undefined {
  const fd = socketFd(socket);
  if (fd === undefined) return undefined;
  try {
    return tcpInfo(fd);
  } catch {
    return undefined;
  }
}
