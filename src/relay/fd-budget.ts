/**
 * How many split connections the open-files limit allows.
 *
 * Each split connection holds two descriptors (downstream and upstream leg). Past the
 * limit accept() fails with EMFILE, and libuv then accepts and closes the waiting
 * connections itself: the clients see a clean FIN with no data, and the relay never
 * hears of them, so it cannot reset, count or log them. Keeping --max-connections
 * inside the limit means the relay's own overload path (reset, count, log) refuses the
 * extra connections first, while accept() still has a descriptor to give.
 */
import { openFdCount, raiseOpenFilesLimit } from '../sys/index.js';

export const FDS_PER_CONNECTION = 2;

/**
 * Descriptors kept out of the connection budget beyond those open at start: listeners
 * added by a reload, metrics scrapes, DNS lookups in libuv's thread pool, reading the
 * config and key on SIGHUP, the one socket being reset over the limit, libuv's own
 * spare for EMFILE.
 */
export const RESERVE_FDS = 64;

/**
 * With early SYN on, this share of the descriptors left after the reserve is kept for
 * early legs (one each: opened at a client's SYN, before its accept), so that they never
 * take a descriptor an admitted connection counts on. At the 20,000-file hard limit of
 * this kind of machine that is ~2,500 early legs beside ~8,700 connections (the default
 * --max-connections is 8,000); the pairing tables cap pending legs at 1,024 per worker.
 */
export const EARLY_LEG_FD_SHARE = 0.125;

export interface FdBudget {
  /** The soft open-files limit now in force, and what it was before the relay raised it. */
  readonly soft: number;
  readonly hard: number;
  readonly softBefore: number;
  /** Descriptors open before the relay accepted anything, plus its listeners. */
  readonly baseline: number;
  /** Split connections the limit leaves room for. */
  readonly maxConnections: number;
  /** Early legs it leaves room for beside them (0 without early SYN). */
  readonly maxEarlyLegs: number;
}

/** The connection budget for `soft` descriptors of which `baseline` are taken (less the early legs' share, with early SYN). */
export function connectionsFor(soft: number, baseline: number, earlySyn = false): number {
  if (soft === Infinity) return Infinity;
  const left = Math.max(0, soft - baseline - RESERVE_FDS);
  return Math.floor((left - earlyLegsFor(soft, baseline, earlySyn)) / FDS_PER_CONNECTION);
}

/** The early legs' budget: their share of the descriptors left (0 without early SYN; Infinity with no limit). */
export function earlyLegsFor(soft: number, baseline: number, earlySyn: boolean): number {
  if (!earlySyn) return 0;
  if (soft === Infinity) return Infinity;
  return Math.floor(Math.max(0, soft - baseline - RESERVE_FDS) * EARLY_LEG_FD_SHARE);
}

/**
 * Raises the soft limit to the hard limit and sizes the budget; `listeners` are the
 * listening sockets about to be opened (not open yet, so not in the count), `inUse` the
 * descriptors the relay's connections and early legs hold now.
 */
export function planFdBudget(listeners: number, earlySyn = false, inUse = 0): FdBudget {
  const limit = raiseOpenFilesLimit();
  // `inUse`: descriptors of connections and early legs open now (a re-plan while the
  // relay runs), which the budget counts in, not out.
  const baseline = Math.max(0, openFdCount() + listeners - inUse);
  return {
    soft: limit.soft, hard: limit.hard, softBefore: limit.before, baseline,
    maxConnections: connectionsFor(limit.soft, baseline, earlySyn), maxEarlyLegs: earlyLegsFor(limit.soft, baseline, earlySyn),
  };
}
