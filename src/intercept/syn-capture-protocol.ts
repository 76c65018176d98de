/** What the SYN capture thread and its owner share: the thread's input, its messages, its counters. */
import type { MessagePort } from 'node:worker_threads';
import type { SynEvent } from './syn-capture.js';

export interface SynCaptureThreadData {
  readonly queueNum: number;
  readonly copyBytes: number;
  readonly maxLen: number;
  /** Run the loop in SCHED_FIFO (needs CAP_SYS_NICE; silently normal without it). */
  readonly realtime: boolean;
  /** [0]: set to 1 to stop the loop; [1]: the thread sets it to 1 once it has closed its queue socket. */
  readonly control: Int32Array;
  /** Indexed by C. */
  readonly counters: Float64Array;
  /** The owner's commands (a new events port); read with receiveMessageOnPort between waits. */
  readonly controlPort: MessagePort;
  /** Where SYN events go; undefined: to the owner (parentPort). */
  readonly eventsPort: MessagePort | undefined;
  /** SYNs to PROBE_ADDRESS on this port are the queue probe's (src/intercept/queue-probe.ts): given their verdict, never posted. */
  readonly probePort: number | undefined;
}

/**
 * The queue probe's loopback address (all of 127.0.0.0/8 is local on Linux): one of its
 * own, so its ephemeral listening ports never collide with a service's on 127.0.0.1.
 */
export const PROBE_ADDRESS = '127.31.0.1';

/** A command from the owner: deliver SYN events to `port` from now on. */
export interface RetargetCommand {
  readonly type: 'port';
  readonly port: MessagePort;
}

/** A SYN event as posted by the thread (to the owner or to an events port). */
export type SynMessage = { readonly type: 'syn' } & SynEvent;

/** The SynEvent in a message received on an events port, or undefined for anything else. */
export function synEventOf(message: unknown): SynEvent | undefined {
  if (typeof message !== 'object' || message === null || (message as { type?: unknown }).type !== 'syn') return undefined;
  const { type: _type, ...event } = message as SynMessage;
  return event;
}

/** Counter slots. */
export const C = {
  /** Packets queued to us (each got its verdict). */
  packets: 0,
  /** Of those, opening SYNs posted to the owner. */
  syns: 1,
  /** Of those, packets that were not a parsable opening SYN (posted nothing). */
  unparsed: 2,
  /** Socket overflows: packets the kernel accepted (fail-open) without showing them to us. */
  overruns: 3,
  /** Of the SYNs, the queue probe's (not posted). */
  probes: 4,
} as const;
export const COUNTER_SLOTS = 5;

export type ThreadMessage =
  | { readonly type: 'ready'; readonly fd: number }
  | { readonly type: 'error'; readonly message: string; readonly code: string | undefined }
  | SynMessage;
