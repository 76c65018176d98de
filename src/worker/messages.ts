/**
 * What the supervisor and its worker threads say to each other (postMessage, so every
 * value is structured-cloned: a Buffer arrives as a Uint8Array, an Error loses its
 * class, hence WireError and wireConfig()).
 */
import type { AddressInfo } from 'node:net';
import type { MessagePort } from 'node:worker_threads';
import type { Endpoint, RelayConfig } from '../config/relay-config.js';
import type { MetricsSnapshot } from '../observe/metrics.js';
import type { WorkerViewPart } from '../control/worker-view.js';
import type { SocketOptions } from '../sys/index.js';
import { ALL_ERRORS, TcpsplitError, errorCode } from '../errors.js';

/** The data a worker starts with (workerData). */
export interface WorkerData {
  readonly index: number;
  readonly workers: number;
  readonly config: RelayConfig;
  /** SharedReplayGuard's buffer. */
  readonly replayBuffer: SharedArrayBuffer;
  /** SharedConnectionSlots' buffer. */
  readonly slotsBuffer: SharedArrayBuffer;
}

export interface WireError {
  readonly code: string;
  readonly message: string;
}

export interface Addresses {
  readonly forward: AddressInfo[];
  readonly accept: AddressInfo | undefined;
  readonly intercept: AddressInfo | undefined;
}

export interface WorkerSnapshot {
  readonly index: number;
  readonly threadId: number;
  readonly metrics: MetricsSnapshot;
  readonly open: number;
  readonly addresses: Addresses;
  /** This worker's share of the relay's view (connections, errors, pools). */
  readonly view: WorkerViewPart;
}

/** Supervisor -> worker. Requests carry an id; the worker answers with a `reply` of that id. */
export type ToWorker =
  | { readonly type: 'reload'; readonly id: number; readonly config: RelayConfig }
  | { readonly type: 'drain'; readonly id: number; readonly timeoutMs?: number }
  | { readonly type: 'snapshot'; readonly id: number }
  /** Early SYN: this worker's SYN events arrive on `port` (transferred) from now on. */
  | { readonly type: 'syn-events'; readonly port: MessagePort }
  /** The answer to a `listen` request: the fd to adopt, or why there is none. */
  | { readonly type: 'listener'; readonly id: number; readonly fd?: number; readonly error?: WireError };

/** Worker -> supervisor. */
export type FromWorker =
  | { readonly type: 'ready'; readonly addresses: Addresses }
  | { readonly type: 'failed'; readonly error: WireError }
  | { readonly type: 'listen'; readonly id: number; readonly key: string; readonly endpoint: Endpoint; readonly socketOptions?: SocketOptions }
  | { readonly type: 'closed'; readonly key: string }
  /** A peer authenticated itself from `address` on --accept (Turbo-Start routes toward it; once per address and worker). */
  | { readonly type: 'peer-seen'; readonly address: string }
  /** While draining: this worker's listeners are closed; `open` connections remain. */
  | { readonly type: 'draining'; readonly open: number }
  | { readonly type: 'reply'; readonly id: number; readonly error?: WireError; readonly value?: WorkerSnapshot };

export function toWire(err: unknown): WireError {
  return { code: errorCode(err), message: err instanceof Error ? err.message : String(err) };
}

/** The error class of `wire.code` again (a RestartRequiredError stays one), else an Error carrying the code. */
export function fromWire(wire: WireError): Error {
  const ErrorClass = ALL_ERRORS.find((c) => c.code === wire.code);
  if (ErrorClass !== undefined) return new ErrorClass(wire.message);
  const err = new Error(wire.message) as Error & { code: string };
  err.code = wire.code;
  return err;
}

/** A config as it arrives in a worker: the key back into a Buffer. */
export function wireConfig(config: RelayConfig): RelayConfig {
  const key = config.key as Uint8Array | undefined;
  return { ...config, key: key === undefined ? undefined : Buffer.from(key) };
}

export function isTcpsplitError(err: unknown): err is TcpsplitError {
  return err instanceof TcpsplitError;
}
