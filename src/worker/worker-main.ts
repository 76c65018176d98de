/**
 * A worker thread's entry point: one Relay engine on the listener fds the supervisor
 * made for this worker (src/worker/supervisor.ts). Everything per connection stays in
 * this thread (pairing, admission, forwarding); what must hold for the relay as a whole
 * is shared memory: the replay guard (also the loop cut-off) and the connection count.
 *
 * Lines every worker would write alike (listening, reloaded, limits raised) come from
 * worker 0 only, so the log reads as one relay's; per-connection lines carry `worker`.
 */
import { parentPort, workerData, threadId } from 'node:worker_threads';
import type { Server } from 'node:net';
import type { Endpoint } from '../config/relay-config.js';
import { createLogger } from '../observe/logger.js';
import { Relay } from '../relay/relay.js';
import type { ListenerSource } from '../relay/listener-set.js';
import { SharedConnectionSlots } from '../relay/connection-slots.js';
import { SharedReplayGuard } from '../protocol/shared-replay-guard.js';
import { enableSaveSyn, listenOnFd, type SocketOptions } from '../sys/index.js';
import { errorCode } from '../errors.js';
import { LoopLag } from '../observe/loop-lag.js';
import { fromWire, toWire, wireConfig, type FromWorker, type ToWorker, type WorkerData } from './messages.js';

/** Events that every worker logs identically; only worker 0 writes them. */
const RELAY_WIDE_EVENTS = new Set(['listen', 'unlisten', 'ffi']);
/** The supervisor logs these once, for all workers: the reload's outcome, the open-files budget. */
const SUPERVISOR_EVENTS = new Set(['reload', 'fd-limit']);
/** pino's info level: the drain's start is the supervisor's line once every worker has closed its listeners. */
const INFO = 30;

const loopLag = new LoopLag();
/** The loop lag read at the last snapshot, ms: what tcpsplit_event_loop_lag_seconds reports. */
let lastLoopLagMs = 0;
const port = parentPort;
if (port === null) throw new Error('worker-main.ts runs only as a worker thread (src/worker/supervisor.ts starts it)');
const data = workerData as WorkerData;
const config = wireConfig(data.config);
const dropped = data.index === 0 ? SUPERVISOR_EVENTS : new Set([...SUPERVISOR_EVENTS, ...RELAY_WIDE_EVENTS]);
const logger = createLogger(config.logLevel, 'tcpsplit-relay', {
  base: { worker: data.index },
  drop: (fields: object, level: number) => {
    const event = (fields as { event?: unknown }).event as string;
    return dropped.has(event) || (event === 'drain' && level === INFO);
  },
});

function send(message: FromWorker): void {
  port?.postMessage(message);
}

let nextId = 1;
const pendingListens = new Map<number, { resolve: (fd: number) => void; reject: (err: Error) => void }>();

/** The supervisor makes (or hands over) this worker's fd for `key`; the Server adopts it with the backlog. */
const listenerSource: ListenerSource = {
  async listen(server: Server, key: string, endpoint: Endpoint, socketOptions: SocketOptions | undefined): Promise<void> {
    const id = nextId++;
    const fd = await new Promise<number>((resolve, reject) => {
      pendingListens.set(id, { resolve, reject });
      send({ type: 'listen', id, key, endpoint, ...(socketOptions === undefined ? {} : { socketOptions }) });
    });
    // Early SYN: the accepted socket's saved SYN gives the ISN a claim checks. Always
    // (the kernel frees it with the socket), so that early SYN can be switched on at run time.
    try {
      enableSaveSyn(fd);
    } catch {
      // without it, a claim trusts the 4-tuple (src/intercept/pairing-table.ts)
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      listenOnFd(server, fd, config.backlog);
      server.once('listening', () => { server.off('error', reject); resolve(); });
    });
  },
  closed(key: string): void {
    send({ type: 'closed', key });
  },
};

let relay: Relay | undefined;

port.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'listener': {
      const waiting = pendingListens.get(message.id);
      pendingListens.delete(message.id);
      if (message.fd !== undefined) waiting?.resolve(message.fd);
      else waiting?.reject(fromWire(message.error ?? { code: 'TCPSPLIT_ERR_LISTEN', message: 'no fd' }));
      return;
    }
    case 'reload':
      answer(message.id, async () => { await relayOrThrow().reload(wireConfig(message.config)); });
      return;
    case 'drain':
      answer(message.id, async () => {
        const r = relayOrThrow();
        const drained = r.drain(message.timeoutMs);
        await listenersClosed(r);
        send({ type: 'draining', open: r.activeConnections });
        await drained;
        await new Promise<void>((resolve) => { logger.flush(() => { resolve(); }); });
      });
      return;
    case 'syn-events':
      relayOrThrow().attachSynEvents(message.port, { index: data.index, workers: data.workers });
      return;
    case 'snapshot': {
      const r = relayOrThrow();
      // One window of loop lag per snapshot, shared by the view and the metrics' gauge.
      lastLoopLagMs = loopLag.readP99Ms();
      Promise.all([r.metrics.registry.snapshot(), r.viewPart(lastLoopLagMs)]).then(
        ([metrics, view]) => {
          const { forward, accept, intercept } = r.addresses();
          send({ type: 'reply', id: message.id, value: { index: data.index, threadId, metrics, open: r.activeConnections, addresses: { forward, accept, intercept }, view } });
        },
        (err: unknown) => { send({ type: 'reply', id: message.id, error: toWire(err) }); },
      );
      return;
    }
  }
});

/**
 * Resolves once the relay's listeners are closed (its drain closes them first; the
 * supervisor logs the drain's start when every worker is there, so that a connect made
 * after that line is refused, not accepted by a worker still listening and then reset).
 */
async function listenersClosed(r: Relay): Promise<void> {
  const deadline = Date.now() + 2000;
  for (;;) {
    const { forward, accept, intercept } = r.addresses();
    if ((forward.length === 0 && accept === undefined && intercept === undefined) || Date.now() > deadline) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function relayOrThrow(): Relay {
  if (relay === undefined) throw new Error('the relay in this worker has not started');
  return relay;
}

function answer(id: number, work: () => Promise<void>): void {
  work().then(
    () => { send({ type: 'reply', id }); },
    (err: unknown) => { send({ type: 'reply', id, error: toWire(err) }); },
  );
}

// As in the single-process relay (src/cli/relay-command.ts): a bug must not turn open
// connections into clean ends. Reset them, then end this thread; the supervisor starts
// another in its place.
process.on('uncaughtException', (err) => {
  logger.fatal({ event: 'crash', code: errorCode(err), err, threadId }, 'uncaught exception in a worker: resetting its connections; the supervisor replaces it');
  relay?.abortAll(err);
  logger.flush();
  process.exit(70);
});

try {
  relay = await Relay.start(config, {
    logger,
    replayGuard: SharedReplayGuard.attach(data.replayBuffer),
    connectionSlots: SharedConnectionSlots.attach(data.slotsBuffer, data.workers, data.index),
    listenerSource,
    workerIndex: data.index,
    // One nftables table per instance: worker 0 installs it and removes it at its drain.
    installInterception: data.index === 0,
    onPeerAuthenticated: (address) => { send({ type: 'peer-seen', address }); },
  });
  relay.metrics.eventLoopLag(data.index, () => lastLoopLagMs / 1000);
  const { forward, accept, intercept } = relay.addresses();
  send({ type: 'ready', addresses: { forward, accept, intercept } });
} catch (err) {
  send({ type: 'failed', error: toWire(err) });
  logger.flush();
}
