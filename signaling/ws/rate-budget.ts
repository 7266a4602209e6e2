/**
 * A connection's request rate budget, a token bucket: it refills at `perSecond` up to `burst`, so a
 * client may send a burst (a join and its negotiation) but not a sustained flood.
 */
import { performance } from 'node:perf_hooks';

export class RateBudget {
  readonly #perSecond: number;
  readonly #burst: number;
  #tokens: number;
  #refilledAt = performance.now();

  constructor(limits: { perSecond: number; burst: number }) {
    this.#perSecond = limits.perSecond;
    this.#burst = limits.burst;
    this.#tokens = limits.burst;
  }

  /** Spends one request's token; false when none is left. */
  take(): boolean {
    const now = performance.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#refilledAt) / 1000) * this.#perSecond);
    this.#refilledAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** What a refused client is told to wait: the time one token takes to come back. */
  get retryAfterMs(): number {
    return Math.ceil(1000 / this.#perSecond);
  }
}
