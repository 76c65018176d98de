/**
 * The SYN capture loop, on a worker_thread of its own: wait on the NFQUEUE socket, give
 * every queued packet its ACCEPT verdict at once, then post the SYN's 4-tuple to the
 * owning thread. The wait is a blocking ppoll() on this thread: the probe measured
 * 80-120 us added to a SYN for a synchronous loop against 270-290 us for koffi's async
 * calls on the main loop, and blocking is only acceptable off the event loop. This loop
 * adds about 50 us at the median (benchmarks/early-syn-queue.ts, docs/early-syn.md).
 *
 * The verdict comes before the post: the SYN is never held for the owner, whose event
 * loop may be busy. The owner must therefore cope with an accept() that runs before the
 * event arrives (the pairing table's late-offer rule).
 */
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { NfQueue, type QueuedPacket } from '../sys/nfqueue.js';
import { setThreadRealtime } from '../sys/thread.js';
import { monotonicMs } from './clock.js';
import { isOpeningSyn, parseSynPacket } from './syn-packet.js';
import { C, PROBE_ADDRESS, type RetargetCommand, type SynCaptureThreadData, type ThreadMessage } from './syn-capture-protocol.js';

const data = workerData as SynCaptureThreadData;
const port = parentPort;
/** Longest wait between checks of the stop flag and of the control port. */
const WAIT_NS = 50e6;
/** Under load the control port is read every this many wake-ups (it is always read when idle). */
const CONTROL_EVERY = 64;
let events: MessagePort | undefined = data.eventsPort;

function post(message: ThreadMessage): void {
  port?.postMessage(message);
}

function postEvent(message: ThreadMessage): void {
  (events ?? port)?.postMessage(message);
}

function readControl(): void {
  for (let m = receiveMessageOnPort(data.controlPort); m !== undefined; m = receiveMessageOnPort(data.controlPort)) {
    const command = m.message as RetargetCommand; // the only command there is
    events?.close();
    events = command.port;
  }
}

function bump(index: number): void {
  data.counters[index] = (data.counters[index] ?? 0) + 1;
}

function run(): void {
  let queue: NfQueue;
  try {
    queue = NfQueue.open({ queueNum: data.queueNum, copyBytes: data.copyBytes, maxLen: data.maxLen });
  } catch (err) {
    post({ type: 'error', message: err instanceof Error ? err.message : String(err), code: codeOf(err) });
    return;
  }
  if (data.realtime) {
    try {
      setThreadRealtime(1);
    } catch {
      // without CAP_SYS_NICE the loop runs at normal priority
    }
  }
  post({ type: 'ready', fd: queue.fd });
  const onPacket = (p: QueuedPacket): void => {
    queue.accept(p.id);
    bump(C.packets);
    const t = monotonicMs();
    const syn = parseSynPacket(p.payload);
    if (syn === undefined || !isOpeningSyn(syn)) {
      bump(C.unparsed);
      return;
    }
    bump(C.syns);
    if (syn.dport === data.probePort && syn.daddr === PROBE_ADDRESS) {
      bump(C.probes);
      return;
    }
    postEvent({ type: 'syn', saddr: syn.saddr, sport: syn.sport, daddr: syn.daddr, dport: syn.dport, family: syn.family, isn: syn.isn, t, queueNum: p.queueNum });
  };
  try {
    let wakeups = 0;
    while (Atomics.load(data.control, 0) === 0) {
      if (queue.waitReadable(WAIT_NS)) {
        queue.receive(onPacket);
        if (++wakeups % CONTROL_EVERY === 0) {
          readControl();
          readOverflows(queue);
        }
      } else {
        readControl();
        readOverflows(queue);
      }
    }
  } catch (err) {
    post({ type: 'error', message: err instanceof Error ? err.message : String(err), code: codeOf(err) });
  } finally {
    // Flag first: if this thread is terminated in between, the socket leaks rather than
    // the owner closing an fd number that may already belong to something else.
    Atomics.store(data.control, 1, 1);
    queue.close();
  }
}

/** The overflow count for the owner's metric; a failed read keeps the last value (a metric must not end the reader). */
function readOverflows(queue: NfQueue): void {
  try {
    data.counters[C.overruns] = queue.overflows();
  } catch {
    // kept as it was
  }
}

function codeOf(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

run();
