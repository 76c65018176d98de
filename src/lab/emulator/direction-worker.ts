/**
 * One link direction, on its own thread: read packets from the input TUN fd, hold each
 * until its due time (DirectionShaper), write it to the output TUN fd.
 *
 * The loop: write every packet whose due time has passed; ppoll() the input fd with a
 * timeout equal to the time left until the next due packet (timer slack lowered to
 * 1 ns, so the wake-up is within tens of microseconds); read a batch of packets into
 * preallocated slots. Packets stay in FIFO order (the shaper keeps due times
 * monotonic), so the delay line is a ring of fixed-size slots and nothing is allocated
 * per packet.
 */
import { workerData } from 'node:worker_threads';
import { MonotonicClock, PollSet, POLLIN, WOULD_BLOCK, read, setThreadNice, setThreadRealtime, setTimerSlackNs, write } from '../../sys/index.js';
import type { DirectionConfig } from '../link-config.js';
import { C, LATE_BUCKETS_MS, LATE_HIST_START } from './counters.js';
import { DROP_LOSS, DirectionShaper } from './shaper.js';

export interface DirectionWorkerData {
  readonly inFd: number;
  readonly outFd: number;
  readonly config: DirectionConfig;
  readonly slots: number;
  readonly counters: Float64Array;
  /** [0]: set to 1 to stop; [1]: the worker sets it to 1 once running. */
  readonly control: Int32Array;
}

export const SLOT_BYTES = 2048; // > the lab's 1500-byte MTU
/**
 * read() is asked for one byte more than a slot holds: TUN truncates a packet to the
 * buffer, so a read that fills SLOT_BYTES + 1 was (or may have been) longer than a slot
 * and is dropped as oversize rather than delivered cut short.
 */
const READ_BYTES = SLOT_BYTES + 1;
const BATCH = 64;
/** Longest sleep while idle: bounds how long a stop request waits. */
const IDLE_WAIT_MS = 20;
/**
 * Wake this long before a due time and poll without sleeping for the rest: a ppoll()
 * timeout overshoots by ~55 us (median) on this VM, a spin by ~0. Spinning is rationed
 * to SPIN_SHARE of the thread's time: at high packet rates the next packet is always
 * within SPIN_MS, and an unrationed real-time thread spinning flat out would run into
 * the kernel's RT throttling (50 ms stalls every second).
 */
const SPIN_MS = 0.1;
const SPIN_SHARE = 0.02;
const SPIN_BUDGET_MAX_MS = 0.5;
/**
 * Emulator threads run ahead of the lab's applications when the CPUs are busy, as the
 * kernel's own qdiscs do (softirq). SCHED_FIFO by default; TCPSPLIT_LAB_SCHED=nice
 * uses nice -10 instead, =normal neither. Measured effect in docs/lab.md.
 */
const SCHED = process.env.TCPSPLIT_LAB_SCHED ?? 'rt';
const RT_PRIORITY = 1;
const NICE = -10;

function bump(c: Float64Array, index: number, by: number): void {
  c[index] = (c[index] ?? 0) + by;
}

function run(data: DirectionWorkerData): void {
  const { inFd, outFd, slots, counters: c, control } = data;
  setTimerSlackNs(1);
  try {
    if (SCHED === 'rt') setThreadRealtime(RT_PRIORITY);
    else if (SCHED === 'nice') setThreadNice(NICE);
  } catch {
    // without CAP_SYS_NICE the emulator still works, with more jitter under load
  }
  // Slots are READ_BYTES apart, so an oversize read can never touch the next slot.
  const ring = Buffer.allocUnsafeSlow(slots * READ_BYTES);
  const views = Array.from({ length: slots }, (_, i) => ring.subarray(i * READ_BYTES, (i + 1) * READ_BYTES));
  const lens = new Int32Array(slots);
  const dues = new Float64Array(slots);
  const scratch = Buffer.allocUnsafeSlow(READ_BYTES);
  const poll = new PollSet([{ fd: inFd, events: POLLIN }]);
  const shaper = new DirectionShaper(data.config);
  // Not performance.now(): it allocates (see clock.ts), and a collection delays packets.
  const clock = new MonotonicClock();
  const clockMs = clock.ms;
  let head = 0;
  let count = 0;
  let spinBudgetMs = SPIN_BUDGET_MAX_MS;
  clock.sample();
  let lastLoopMs = clockMs[0] ?? 0;
  Atomics.store(control, 1, 1);

  while (Atomics.load(control, 0) === 0) {
    clock.sample();
    let now = clockMs[0] ?? 0;
    spinBudgetMs = Math.min(SPIN_BUDGET_MAX_MS, spinBudgetMs + (now - lastLoopMs) * SPIN_SHARE);
    lastLoopMs = now;
    while (count > 0 && (dues[head] ?? 0) <= now) {
      const len = lens[head] ?? 0;
      let n: number;
      try {
        n = write(outFd, views[head] ?? scratch, len);
      } catch {
        n = WOULD_BLOCK; // e.g. EIO while the far device is down
      }
      if (n === len) {
        bump(c, C.txPackets, 1);
        bump(c, C.txBytes, len);
        const late = now - (dues[head] ?? now);
        bump(c, C.lateSumMs, late);
        if (late > (c[C.lateMaxMs] ?? 0)) c[C.lateMaxMs] = late;
        let bucket = 0;
        while (bucket < LATE_BUCKETS_MS.length && late > (LATE_BUCKETS_MS[bucket] ?? 0)) bucket++;
        bump(c, LATE_HIST_START + bucket, 1);
      } else {
        bump(c, C.dropWrite, 1);
      }
      head = head + 1 === slots ? 0 : head + 1;
      count--;
    }
    const waitMs = count > 0 ? (dues[head] ?? now) - now : IDLE_WAIT_MS;
    if (waitMs > SPIN_MS) {
      poll.wait(Math.min(waitMs - SPIN_MS, IDLE_WAIT_MS) * 1e6);
    } else if (spinBudgetMs > 0) {
      poll.wait(0);
      clock.sample();
      spinBudgetMs -= (clockMs[0] ?? 0) - now;
    } else if (waitMs > 0) {
      poll.wait(waitMs * 1e6);
    }

    for (let i = 0; i < BATCH; i++) {
      const tail = (head + count) % slots;
      const buf = count < slots ? (views[tail] ?? scratch) : scratch;
      const n = read(inFd, buf, READ_BYTES);
      if (n === WOULD_BLOCK || n === 0) break;
      // Each packet's own arrival time: a due time from before its read would send it early.
      clock.sample();
      now = clockMs[0] ?? 0;
      bump(c, C.rxPackets, 1);
      bump(c, C.rxBytes, n);
      if (n > SLOT_BYTES) {
        bump(c, C.dropOversize, 1);
        continue;
      }
      if (count === slots) {
        bump(c, C.dropBuffer, 1);
        continue;
      }
      const due = shaper.admit(now, n);
      if (due < 0) {
        bump(c, due === DROP_LOSS ? C.dropLoss : C.dropQueue, 1);
        continue;
      }
      lens[tail] = n;
      dues[tail] = due;
      count++;
    }
    clock.sample();
    now = clockMs[0] ?? 0;
    c[C.queuedPackets] = shaper.queuedPackets(now);
    c[C.inFlightPackets] = count;
    c[C.loopAtMs] = now;
  }
}

run(workerData as DirectionWorkerData);
