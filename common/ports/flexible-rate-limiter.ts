/**
 * The counting shared by both RateLimiter adapters: rate-limiter-flexible does the work,
 * this maps its API onto the port (one limiter per rule, rejections become decisions).
 */
import { type RateLimiterAbstract, RateLimiterRes } from 'rate-limiter-flexible';
import { z } from 'zod';
import { InvalidArgumentError } from '../contracts/index.js';
import type { RateDecision, RateLimiter, RateRule } from './rate-limiter.js';

const ruleSchema = z.object({
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'a rule name is 1-64 letters, digits, ".", "_" or "-"'),
  points: z.number().int().positive(),
  durationS: z.number().int().positive(),
});
const keySchema = z.string().min(1).max(256);
const costSchema = z.number().int().positive();

function parse<T>(schema: z.ZodType<T>, value: unknown, field: string): T {
  const result = schema.safeParse(value);
  if (!result.success) {
    throw new InvalidArgumentError(`${field}: ${result.error.issues[0]?.message ?? 'invalid'}`, field);
  }
  return result.data;
}

export abstract class FlexibleRateLimiter implements RateLimiter {
  private readonly limiters = new Map<string, { rule: RateRule; limiter: RateLimiterAbstract }>();

  /** Builds the library limiter of one rule; called once per rule name. */
  protected abstract build(rule: RateRule): RateLimiterAbstract;

  async consume(rule: RateRule, key: string, cost = 1): Promise<RateDecision> {
    const limiter = this.limiterFor(rule);
    const points = parse(costSchema, cost, 'cost');
    try {
      const res = await limiter.consume(parse(keySchema, key, 'key'), points);
      return { allowed: true, remaining: res.remainingPoints, retryAfterMs: 0 };
    } catch (error) {
      // The library rejects with a RateLimiterRes when the window is used up, and with an
      // Error when the store failed: only the first is a refusal.
      if (!(error instanceof RateLimiterRes)) throw error;
      return { allowed: false, remaining: 0, retryAfterMs: Math.max(1, Math.ceil(error.msBeforeNext)) };
    }
  }

  async reset(rule: RateRule, key: string): Promise<void> {
    await this.limiterFor(rule).delete(parse(keySchema, key, 'key'));
  }

  async close(): Promise<void> {
    this.limiters.clear();
  }

  private limiterFor(input: RateRule): RateLimiterAbstract {
    const rule = parse(ruleSchema, input, 'rule');
    const known = this.limiters.get(rule.name);
    if (known) {
      // Two rules with one name would share counters under different limits: a programming error.
      if (known.rule.points !== rule.points || known.rule.durationS !== rule.durationS) {
        throw new Error(`rate rule "${rule.name}" is already defined with other limits`);
      }
      return known.limiter;
    }
    const limiter = this.build(rule);
    this.limiters.set(rule.name, { rule, limiter });
    return limiter;
  }
}
