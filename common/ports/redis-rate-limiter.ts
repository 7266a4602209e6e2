/**
 * Cluster RateLimiter: counters in Redis, so every node enforces one shared limit.
 *
 * The Redis client belongs to the caller (it is shared with other ports); close() leaves it open.
 */
import type { Redis } from 'ioredis';
import { type RateLimiterAbstract, RateLimiterRedis } from 'rate-limiter-flexible';
import { FlexibleRateLimiter } from './flexible-rate-limiter.js';
import type { RateRule } from './rate-limiter.js';

export interface RedisRateLimiterOptions {
  redis: Redis;
  /** Prepended to every key, e.g. "veza:", so one Redis can serve several deployments. */
  keyPrefix: string;
}

export class RedisRateLimiter extends FlexibleRateLimiter {
  constructor(private readonly options: RedisRateLimiterOptions) {
    super();
  }

  protected build(rule: RateRule): RateLimiterAbstract {
    return new RateLimiterRedis({
      storeClient: this.options.redis,
      keyPrefix: `${this.options.keyPrefix}rl:${rule.name}`,
      points: rule.points,
      duration: rule.durationS,
      // No in-memory shortcut: a reset on one node must count on every node at once.
      inMemoryBlockOnConsumed: 0,
    });
  }
}
