/**
 * Capped exponential backoff with jitter for a peer that is down: the wait after the
 * n-th consecutive failure is initial × 2^(n-1), capped, then scaled into [50 %, 100 %]
 * so that the pools of many workers do not redial in step.
 */
export class Backoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #random: () => number;
  #failures = 0;

  constructor(initialMs: number, maxMs: number, random: () => number = Math.random) {
    this.#initialMs = initialMs;
    this.#maxMs = maxMs;
    this.#random = random;
  }

  get failures(): number {
    return this.#failures;
  }

  /** Records a failure; returns how long to wait before the next attempt. */
  fail(): number {
    this.#failures++;
    const exp = Math.min(this.#maxMs, this.#initialMs * 2 ** Math.min(this.#failures - 1, 30));
    return Math.max(1, Math.round(exp * (0.5 + 0.5 * this.#random())));
  }

  succeed(): void {
    this.#failures = 0;
  }
}
