/**
 * RateLimiter port: fixed-window counters keyed by a rule and a subject (an IP, a user).
 *
 * Adapters: in-process memory (standalone) and Redis (cluster), both from
 * rate-limiter-flexible so the counting logic is one well-tested library.
 */

export interface RateRule {
  /** Namespace of the counter, e.g. "login-ip". */
  name: string;
  /** How many points may be consumed per window. */
  points: number;
  durationS: number;
}

export interface RateDecision {
  allowed: boolean;
  remaining: number;
  /** When refused: how long until a point is available again. */
  retryAfterMs: number;
}

export interface RateLimiter {
  consume(rule: RateRule, key: string, cost?: number): Promise<RateDecision>;
  /** Forgets a key's usage, e.g. a successful login clears the failures of that account. */
  reset(rule: RateRule, key: string): Promise<void>;
  close(): Promise<void>;
}
