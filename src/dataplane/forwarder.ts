import type { Socket } from 'node:net';

/**
 * The data plane of a split connection: moves bytes between its two halves and reports
 * what it moved, so nothing above it reads Node socket internals (a splice or sockmap
 * forwarder never passes bytes through a Node stream, and would report zeros there).
 *
 * Directions are named from the client's side: 'up' is client -> server (read from the
 * downstream half, written to the upstream one), 'down' is server -> client.
 */
export type Direction = 'up' | 'down';

/** What a forwarder tells its connection. Implemented by SplitConnection (no closures). */
export interface ForwardingSink {
  /** A clean EOF (FIN) ended `direction`: the connection half-closes it on the other half. */
  forwardingEnded(direction: Direction): void;
  /** The half sending in `direction` was reset (a reset seen as EOF): never pass it on as a FIN. */
  forwardingReset(direction: Direction, reason: string): void;
}

/** Counters read when the connection is recorded; never pushed per chunk. */
export interface ForwardingStats {
  /** Payload bytes taken from the downstream half (after any relay header). */
  readonly upBytes: number;
  /** Payload bytes written to the downstream half. */
  readonly downBytes: number;
  /** performance.now() of the first byte from the upstream half, if any came. */
  readonly firstByteAt: number | undefined;
}

/** The forwarding of one connection. */
export interface Forwarding extends ForwardingStats {
  /**
   * Client bytes already buffered on the downstream half before forwarding starts, for the
   * next leg's preamble (sent in the header's segment); counted as 'up'. Call before start().
   */
  takeEarly(): Buffer | null;
  /** Starts moving bytes both ways, with backpressure. */
  start(): void;
  /**
   * Optional (a forwarder without these cannot retry a pooled leg).
   * Keeps a copy of what is forwarded up from now on, up to `limitBytes`, until
   * takeJournal(): a pooled leg that turns out dead before any sign of life is replaced,
   * and the replacement must carry every byte the dead one swallowed (src/pool/first-use.ts).
   */
  journalUp?(limitBytes: number): void;
  /** The bytes kept since journalUp(), or undefined if they passed the limit; stops keeping them. */
  takeJournal?(): Buffer | undefined;
  /**
   * Continues with `upstream` in place of the current upstream half, which is no longer
   * read or written (the connection has detached and reset it). Only before any byte came
   * back from the old one.
   */
  replaceUpstream?(upstream: Socket): void;
}

/** Creates the forwarding between two connected halves. One forwarder serves many connections. */
export interface Forwarder {
  readonly name: string;
  open(downstream: Socket, upstream: Socket, sink: ForwardingSink): Forwarding;
}

/** Stats of a connection whose forwarding never started. */
export const NO_FORWARDING: ForwardingStats = Object.freeze({ upBytes: 0, downBytes: 0, firstByteAt: undefined });
