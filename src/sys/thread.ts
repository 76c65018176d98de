/**
 * Per-thread scheduling knobs. The kernel's default timer slack (50 us) would let a
 * ppoll() timeout fire up to 50 us late; the link emulator lowers it for its threads.
 */
import { libcFunction, lastErrno } from './libc.js';
import { sysCallError } from './errno.js';

const PR_SET_TIMERSLACK = 29;

/** Sets the calling thread's timer slack (prctl PR_SET_TIMERSLACK); 0 restores the default. */
export function setTimerSlackNs(ns: number): void {
  const r = libcFunction('int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)')(
    PR_SET_TIMERSLACK, ns, 0, 0, 0) as number;
  if (r < 0) throw sysCallError('prctl(PR_SET_TIMERSLACK)', lastErrno());
}

const PRIO_PROCESS = 0;

/**
 * Sets the calling thread's nice value (Linux applies setpriority(PRIO_PROCESS, 0) to
 * the calling thread only). Negative values need CAP_SYS_NICE.
 */
export function setThreadNice(nice: number): void {
  const r = libcFunction('int setpriority(int which, unsigned int who, int prio)')(PRIO_PROCESS, 0, nice) as number;
  if (r < 0) throw sysCallError(`setpriority(${nice})`, lastErrno());
}

const SCHED_FIFO = 1;

/**
 * Puts the calling thread in the SCHED_FIFO real-time class at `priority` (1-99), so it
 * preempts ordinary (CFS) threads the moment it wakes. Linux's RT throttling
 * (kernel.sched_rt_runtime_us) still leaves other threads 5% of each CPU. Needs
 * CAP_SYS_NICE.
 */
export function setThreadRealtime(priority: number): void {
  const param = Buffer.alloc(4);
  param.writeInt32LE(priority, 0);
  const r = libcFunction('int sched_setscheduler(int pid, int policy, void *param)')(0, SCHED_FIFO, param) as number;
  if (r < 0) throw sysCallError(`sched_setscheduler(SCHED_FIFO, ${priority})`, lastErrno());
}
