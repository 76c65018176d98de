import type { Socket } from 'node:net';
import { pendingSocketError } from '../sys/index.js';
import type { Forwarder, Forwarding, ForwardingSink } from './forwarder.js';

/**
 * Forwarding through Node streams: 'data' -> write(), with backpressure both ways (a full
 * write() pauses the reading half until 'drain', so a slow reader never makes us buffer
 * without bound). EOF is reported, not acted on: the connection owns half-close, resets and
 * linger (src/relay/split-connection.ts).
 *
 * Hot-path listeners are module-level functions; the per-connection state lives on the
 * sockets under symbols, so no closure is created per connection or per chunk.
 */

const kFlow = Symbol('tcpsplit.flow');
const kPeer = Symbol('tcpsplit.flow.peer');

interface FlowSocket extends Socket {
  [kFlow]: StreamForwarding;
  [kPeer]: FlowSocket;
}

class StreamForwarding implements Forwarding {
  upBytes = 0;
  downBytes = 0;
  firstByteAt: number | undefined;
  readonly downstream: FlowSocket;
  upstream: FlowSocket;
  readonly sink: ForwardingSink;
  /** Copies of the up bytes while a pooled leg is on probation (journalUp). */
  journal: Buffer[] | undefined;
  journalBytes = 0;
  journalLimit = 0;
  journalOverflow = false;
  started = false;

  constructor(downstream: Socket, upstream: Socket, sink: ForwardingSink) {
    this.downstream = downstream as FlowSocket;
    this.upstream = upstream as FlowSocket;
    this.sink = sink;
    this.downstream[kFlow] = this;
    this.upstream[kFlow] = this;
    this.downstream[kPeer] = this.upstream;
    this.upstream[kPeer] = this.downstream;
  }

  takeEarly(): Buffer | null {
    const early = this.downstream.read() as Buffer | null;
    if (early !== null) this.upBytes += early.length;
    return early;
  }

  start(): void {
    this.started = true;
    startLeg(this.downstream);
    startLeg(this.upstream);
  }

  journalUp(limitBytes: number): void {
    this.journal = [];
    this.journalBytes = 0;
    this.journalLimit = limitBytes;
    this.journalOverflow = false;
  }

  takeJournal(): Buffer | undefined {
    const journal = this.journal;
    this.journal = undefined;
    if (journal === undefined || this.journalOverflow) return undefined;
    return Buffer.concat(journal);
  }

  replaceUpstream(upstream: Socket): void {
    const old = this.upstream;
    old.off('data', onData);
    old.off('drain', onDrain);
    old.off('end', onEnd);
    const next = upstream as FlowSocket;
    next[kFlow] = this;
    next[kPeer] = this.downstream;
    this.downstream[kPeer] = next;
    this.upstream = next;
    if (!this.started) return;
    startLeg(next);
    // The downstream half may have paused on the old leg's backpressure, whose 'drain' never comes now.
    this.downstream.resume();
  }
}

function startLeg(leg: FlowSocket): void {
  leg.on('data', onData);
  leg.on('drain', onDrain);
  // A FIN that came while the next leg was still connecting (or before the halves were
  // paired) has already emitted 'end' (net.Socket emits it at EOF even with no reader).
  if (leg.readableEnded) onEnd.call(leg);
  else leg.on('end', onEnd);
  leg.resume();
}

function onData(this: FlowSocket, chunk: Buffer): void {
  const flow = this[kFlow];
  if (this === flow.downstream) {
    flow.upBytes += chunk.length;
    if (flow.journal !== undefined && !flow.journalOverflow) {
      flow.journalBytes += chunk.length;
      if (flow.journalBytes > flow.journalLimit) flow.journalOverflow = true;
      else flow.journal.push(chunk);
    }
  } else {
    flow.firstByteAt ??= performance.now();
    flow.downBytes += chunk.length;
  }
  if (!this[kPeer].write(chunk)) this.pause();
}

function onDrain(this: FlowSocket): void {
  this[kPeer].resume();
}

function onEnd(this: FlowSocket): void {
  const flow = this[kFlow];
  const direction = this === flow.downstream ? 'up' : 'down';
  const reset = pendingSocketError(this);
  if (reset !== undefined) flow.sink.forwardingReset(direction, reset);
  else flow.sink.forwardingEnded(direction);
}

/** Today's data plane: Node streams in the event loop. */
export const streamForwarder: Forwarder = Object.freeze({
  name: 'stream',
  open(downstream: Socket, upstream: Socket, sink: ForwardingSink): Forwarding {
    return new StreamForwarding(downstream, upstream, sink);
  },
});
