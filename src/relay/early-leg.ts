/**
 * Early SYN in one worker (issue 8, DESIGN.md "The accept path in one worker"):
 *
 *   SYN event (this worker's queue) -> target known at the SYN (-L, --intercept)?
 *        -> pairing.offer(syn, open): a SplitConnection with its upstream half first
 *   accept() -> claim(socket, original destination, saved SYN's ISN)
 *        -> the early connection takes the accepted socket as its downstream half,
 *           or undefined: the caller connects after accept, as today.
 *
 * The connection is the pairing table's "leg": its upstream half is already connecting
 * when the client's handshake completes, so the two handshakes overlap. A failed early leg
 * fails its connection, which stays in the table: the claim then resets the accepted client
 * (attachDownstream on a failed connection resets), with the failure's code in the record.
 * An entry nobody claims is dropped by the table (3 s), and its connection failed with
 * EarlyLegUnclaimedError, which closes the leg.
 *
 * Steering: the SYN queue and the SO_REUSEPORT listener use one function, steer(). An
 * event whose steer() names another worker is a miss: no leg is opened here (the worker
 * that accepts falls back), and the miss is counted. A claim never pairs the wrong halves:
 * it matches the 4-tuple and, where the listener saved the SYN, the ISN.
 */
import type { Socket } from 'node:net';
import type { MessagePort } from 'node:worker_threads';
import { monotonicMs, synEventOf, type SynEvent } from '../intercept/syn-capture.js';
import { PairingTable, type DropReason, type OfferOutcome } from '../intercept/pairing-table.js';
import { parseSynPacket } from '../intercept/syn-packet.js';
import { describeFourTuple, type FourTuple } from '../net/four-tuple.js';
import { steer } from '../net/steer.js';
import { labelsFor, type Metrics } from '../observe/metrics.js';
import { socketFd, takeSavedSyn } from '../sys/index.js';
import { EarlyLegUnclaimedError } from '../errors.js';
import type { ConnectionKind, SplitConnection } from './split-connection.js';
import type { LegFactory, NextLeg } from './leg-factory.js';
import type { Destination } from './target-source.js';

export interface EarlyTarget {
  readonly kind: ConnectionKind;
  readonly destination: Destination;
}

export interface EarlyLegHooks {
  /** Where a SYN to this relay goes, when that is known at the SYN; undefined: not one of ours. */
  readonly targetOf: (syn: SynEvent) => EarlyTarget | undefined;
  /** A connection with its next leg opening; throws when it must not open one now (limits). */
  readonly open: (syn: SynEvent, target: EarlyTarget) => SplitConnection;
}

export interface EarlyLegsOptions {
  /** This worker's index and the worker count: steer() must name this worker. */
  readonly index: number;
  readonly workers: number;
  readonly metrics: Metrics;
  readonly hooks: EarlyLegHooks;
  readonly timeoutMs?: number;
  readonly maxEntries?: number;
  readonly maxPerSource?: number;
}

/** Seconds: the capture thread's post to this worker, and a SYN's lead over its accept. */
const DELAY_BUCKETS_S = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1] as const;

export class EarlyLegs {
  readonly #index: number;
  readonly #workers: number;
  readonly #hooks: EarlyLegHooks;
  readonly #table: PairingTable<SplitConnection>;
  readonly #ports: MessagePort[] = [];
  readonly #captured: (by?: number) => void;
  readonly #offers: (by: number, labels: ReturnType<typeof labelsFor>) => void;
  readonly #paired: (by?: number) => void;
  readonly #fallbacks: (by?: number) => void;
  readonly #dropped: (by: number, labels: ReturnType<typeof labelsFor>) => void;
  readonly #steeringMisses: (by?: number) => void;
  readonly #eventDelay: (seconds: number) => void;
  readonly #lead: (seconds: number) => void;

  constructor(options: EarlyLegsOptions) {
    this.#index = options.index;
    this.#workers = options.workers;
    this.#hooks = options.hooks;
    this.#table = new PairingTable<SplitConnection>({
      onDrop: this.#onDrop,
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
      ...(options.maxEntries === undefined ? {} : { maxEntries: options.maxEntries }),
      ...(options.maxPerSource === undefined ? {} : { maxPerSource: options.maxPerSource }),
    });
    const m = options.metrics;
    this.#captured = m.counter('tcpsplit_early_syn_captured_total', 'SYNs the capture delivered to this relay for its -L and --intercept listeners.');
    this.#offers = m.counter('tcpsplit_early_syn_offers_total',
      'What a captured SYN led to, by outcome (opened: an early leg; retransmit, late, full, source-cap, open-failed, not-ours: none).', ['outcome']);
    this.#paired = m.counter('tcpsplit_early_syn_paired_total', 'Accepted connections that took the leg opened at their SYN.');
    this.#fallbacks = m.counter('tcpsplit_early_syn_fallbacks_total', 'Accepted connections with no early leg waiting: connected after accept.');
    this.#dropped = m.counter('tcpsplit_early_syn_dropped_total', 'Early legs closed unclaimed, by reason (expired, superseded, mismatch, closed).', ['reason']);
    this.#steeringMisses = m.counter('tcpsplit_early_syn_steering_misses_total', 'SYNs delivered to a worker that steer() says will not accept them.');
    m.gauge('tcpsplit_early_syn_pending', 'Early legs waiting for their accept now (the pairing table\'s size).', () => this.#table.size);
    this.#eventDelay = m.histogram('tcpsplit_early_syn_event_delay_seconds',
      'From the capture thread reading a SYN (after its verdict) to the worker handling the event.', DELAY_BUCKETS_S);
    this.#lead = m.histogram('tcpsplit_early_syn_lead_seconds',
      'From a SYN\'s capture to the accept that claimed its early leg: the head start the next leg got.', DELAY_BUCKETS_S);
  }

  get timeoutMs(): number {
    return this.#table.timeoutMs;
  }

  /** Early legs waiting for their accept. */
  get size(): number {
    return this.#table.size;
  }

  get maxEntries(): number {
    return this.#table.maxEntries;
  }

  get counters(): Readonly<PairingTable<SplitConnection>['counters']> {
    return this.#table.counters;
  }

  /** Takes SYN events from `port` (the supervisor's capture for this worker). */
  listen(port: MessagePort): void {
    this.#ports.push(port);
    port.on('message', (message: unknown) => {
      const syn = synEventOf(message);
      if (syn !== undefined) this.onSyn(syn);
    });
  }

  onSyn(syn: SynEvent): void {
    this.#captured();
    this.#eventDelay(Math.max(0, monotonicMs() - syn.t) / 1000);
    if (steer({ address: syn.saddr, port: syn.sport }, this.#workers) !== this.#index) {
      this.#steeringMisses();
      return;
    }
    const target = this.#hooks.targetOf(syn);
    if (target === undefined) {
      this.#offers(1, labelsFor('outcome', 'not-ours'));
      return;
    }
    const outcome: OfferOutcome = this.#table.offer(syn, () => this.#hooks.open(syn, target));
    this.#offers(1, labelsFor('outcome', outcome));
  }

  /**
   * The early connection for an accepted socket whose SYN went to `daddr`:`dport` (the
   * listener's address, or the original destination of an intercepted flow), or undefined.
   */
  claim(socket: Socket, daddr: string, dport: number): SplitConnection | undefined {
    const { remoteAddress, remotePort } = socket;
    if (remoteAddress === undefined || remotePort === undefined) return undefined;
    const tuple: FourTuple = { saddr: remoteAddress, sport: remotePort, daddr, dport };
    let claimed;
    try {
      claimed = this.#table.claim(tuple, savedIsn(socket));
    } catch {
      return undefined; // not an address literal: nothing was captured for it
    }
    if (claimed === undefined) {
      this.#fallbacks();
      return undefined;
    }
    this.#paired();
    this.#lead(Math.max(0, monotonicMs() - claimed.synAt) / 1000);
    return claimed.leg;
  }

  /** Drops every waiting leg and stops listening. */
  close(): void {
    for (const port of this.#ports) port.close();
    this.#ports.length = 0;
    this.#table.close();
  }

  readonly #onDrop = (conn: SplitConnection, reason: DropReason, tuple: FourTuple): void => {
    this.#dropped(1, labelsFor('reason', reason));
    conn.fail(new EarlyLegUnclaimedError(`the leg opened at the SYN of ${describeFourTuple(tuple)} was not claimed (${reason})`));
  };
}

/** The ISN of the SYN that made `socket` (TCP_SAVED_SYN), when its listener saved it. */
function savedIsn(socket: Socket): number | undefined {
  const fd = socketFd(socket);
  if (fd === undefined) return undefined;
  try {
    const syn = takeSavedSyn(fd);
    return syn === undefined ? undefined : parseSynPacket(syn)?.isn;
  } catch {
    return undefined;
  }
}

/**
 * Early legs to peers whose header is not sent yet (still connecting, or connected while
 * this worker's event loop is busy). The peer counts each as an unauthenticated pending
 * connection of this relay's address and evicts the oldest beyond its per-source cap
 * (--max-pending-per-source, default 64 over its workers): a burst of early legs must
 * stay well inside it, or the peer resets them and their clients with them.
 */
export interface UnsentHeaders { count: number }
export const MAX_UNSENT_EARLY_HEADERS = 8;

/**
 * Early legs to a peer relay send their header as soon as they connect, not when the
 * accepted client pairs: a peer holds a headerless connection as unauthenticated, in its
 * per-source pending cap (src/relay/admission.ts), and a burst of early legs waiting for
 * their accepts would have the peer evict (reset) them. The client's bytes follow once
 * paired. So R_S learns the target at R_C's connect, at the SYN's pace: with the SYN's
 * amplification bounds (docs/early-syn.md), as with the pool.
 */
export function headerAtConnect(factory: LegFactory, unsent: UnsentHeaders): LegFactory {
  return {
    open(request) {
      const leg = factory.open(request);
      if (leg.route !== 'peer') return leg;
      let sent = false;
      unsent.count++;
      const settle = (): void => {
        if (sent) return;
        sent = true;
        unsent.count--;
      };
      const sendHeader = (): void => {
        if (sent) return;
        settle();
        leg.preamble(null);
      };
      leg.socket.once('close', settle);
      // Registered before the connection's own 'connect' listener: the header goes first.
      if (leg.socket.connecting) leg.socket.once('connect', sendHeader);
      else sendHeader();
      const eager: NextLeg = {
        ...leg,
        preamble: (early) => {
          sendHeader();
          if (early !== null) leg.socket.write(early);
        },
      };
      return eager;
    },
  };
}
