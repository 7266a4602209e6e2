/** In-process RateLimiter for standalone mode (one process, so local counters are the truth). */
import { type RateLimiterAbstract, RateLimiterMemory } from 'rate-limiter-flexible';
import { FlexibleRateLimiter } from './flexible-rate-limiter.js';
import type { RateRule } from './rate-limiter.js';

export class MemoryRateLimiter extends FlexibleRateLimiter {
  protected build(rule: RateRule): RateLimiterAbstract {
    return new RateLimiterMemory({ keyPrefix: rule.name, points: rule.points, duration: rule.durationS });
  }
}
