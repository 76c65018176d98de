import { readdirSync, readFileSync } from 'node:fs';

/**
 * How much of the machine other work used while we measured. On a shared machine another
 * job's busy loop halves every number; the run reports it, and measures again when it was high.
 *
 * foreign = (all CPU busy time) - (CPU time of this process, its reaped children, and every
 * process in the groups it started), over the window, as a share of all cores. Times are in
 * clock ticks in /proc/stat and /proc/PID/stat alike.
 */

function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  // user nice system idle iowait irq softirq steal (guest time is already inside user).
  const t = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = t.reduce((a, b) => a + b, 0);
  // irq and softirq count as neither: loopback TCP does its receive work in softirq, for us,
  // and no process is charged for it. Steal is another VM's load: foreign.
  const busy = (t[0] ?? 0) + (t[1] ?? 0) + (t[2] ?? 0) + (t[7] ?? 0);
  return { busy, total };
}

/** pgrp, name, and CPU ticks (user + system, plus reaped children) from /proc/PID/stat. */
function statOf(pid: string): { pgrp: number; comm: string; ticks: number } | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // gone meanwhile
  }
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // stat(5) fields 5 (pgrp) and 14-17 (utime, stime, cutime, cstime); f[0] is field 3.
  const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
  return { pgrp: Number(f[2]), comm, ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) };
}

function ourTicks(groups: ReadonlySet<number>): number {
  let ticks = statOf(String(process.pid))?.ticks ?? 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const s = statOf(entry);
    // ksoftirqd does the loopback packet work that softirq context could not finish: ours too.
    if (s !== undefined && (groups.has(s.pgrp) || s.comm.startsWith('ksoftirqd'))) ticks += s.ticks;
  }
  return ticks;
}

export class ForeignLoadMeter {
  readonly #groups: () => Iterable<number>;
  #machine = machineTicks();
  #ours = 0;

  /** `groups` lists the process groups this run started (their leaders' pids), read at each call. */
  constructor(groups: () => Iterable<number>) {
    this.#groups = groups;
    this.start();
  }

  start(): void {
    this.#ours = ourTicks(new Set(this.#groups()));
    this.#machine = machineTicks();
  }

  /** The share of all cores (0..1) used by other processes since start(). */
  read(): number {
    const machine = machineTicks();
    const ours = ourTicks(new Set(this.#groups()));
    const total = machine.total - this.#machine.total;
    if (total <= 0) return 0;
    const foreign = (machine.busy - this.#machine.busy) - (ours - this.#ours);
    return Math.min(1, Math.max(0, foreign / total));
  }
}
