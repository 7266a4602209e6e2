import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../contracts/index.js';
import { clusterServices } from '../testing/index.js';
import { MemoryRateLimiter } from './memory-rate-limiter.js';
import type { RateLimiter, RateRule } from './rate-limiter.js';
import { RedisRateLimiter } from './redis-rate-limiter.js';

/** One key namespace per run of this file, so parallel runs on one Redis never share counters. */
const PREFIX = `veza-test-${randomBytes(6).toString('hex')}:`;

interface Harness {
  limiter: RateLimiter;
  close(): Promise<void>;
}

async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  const stream = redis.scanStream({ match: `${prefix}*`, count: 100 });
  for await (const keys of stream) {
    if ((keys as string[]).length > 0) await redis.del(...(keys as string[]));
  }
}

const adapters: { name: string; create(): Promise<Harness> }[] = [
  {
    name: 'memory',
    async create() {
      const limiter = new MemoryRateLimiter();
      return { limiter, close: () => limiter.close() };
    },
  },
  {
    name: 'redis',
    async create() {
      const redis = new Redis(clusterServices.redisUrl);
      const limiter = new RedisRateLimiter({ redis, keyPrefix: PREFIX });
      return {
        limiter,
        async close() {
          await limiter.close();
          await deleteKeys(redis, PREFIX);
          await redis.quit();
        },
      };
    },
  },
];

describe.each(adapters)('RateLimiter contract: $name', (adapter) => {
  let h: Harness;
  beforeAll(async () => {
    h = await adapter.create();
  });
  afterAll(async () => {
    await h?.close();
  });

  const login: RateRule = { name: 'login', points: 3, durationS: 60 };

  it('allows the points of a window, then refuses with a retry delay', async () => {
    const decisions = [];
    for (let i = 0; i < 4; i++) decisions.push(await h.limiter.consume(login, 'ip-1'));
    expect(decisions.slice(0, 3)).toEqual([
      { allowed: true, remaining: 2, retryAfterMs: 0 },
      { allowed: true, remaining: 1, retryAfterMs: 0 },
      { allowed: true, remaining: 0, retryAfterMs: 0 },
    ]);
    const refused = decisions[3];
    expect(refused).toMatchObject({ allowed: false, remaining: 0 });
    expect(refused?.retryAfterMs).toBeGreaterThan(0);
    expect(refused?.retryAfterMs).toBeLessThanOrEqual(60_000);
  });

  it('counts keys and rules independently', async () => {
    await h.limiter.consume(login, 'ip-2', 3);
    expect((await h.limiter.consume(login, 'ip-2')).allowed).toBe(false);
    expect(await h.limiter.consume(login, 'ip-3')).toEqual({ allowed: true, remaining: 2, retryAfterMs: 0 });
    const other: RateRule = { name: 'register', points: 1, durationS: 60 };
    expect((await h.limiter.consume(other, 'ip-2')).allowed).toBe(true);
  });

  it('charges a cost and refuses what would exceed the window', async () => {
    expect(await h.limiter.consume(login, 'ip-4', 2)).toMatchObject({ allowed: true, remaining: 1 });
    expect(await h.limiter.consume(login, 'ip-4', 2)).toMatchObject({ allowed: false, remaining: 0 });
  });

  it('forgets a key on reset', async () => {
    await h.limiter.consume(login, 'account-1', 3);
    expect((await h.limiter.consume(login, 'account-1')).allowed).toBe(false);
    await h.limiter.reset(login, 'account-1');
    expect(await h.limiter.consume(login, 'account-1')).toEqual({
      allowed: true,
      remaining: 2,
      retryAfterMs: 0,
    });
    await h.limiter.reset(login, 'never-seen');
  });

  it('validates its input', async () => {
    await expect(h.limiter.consume(login, 'ip-5', 0)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(h.limiter.consume(login, '')).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(
      h.limiter.consume({ name: 'bad name', points: 1, durationS: 1 }, 'k'),
    ).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(h.limiter.consume({ ...login, points: 5 }, 'ip-5')).rejects.toThrow(/already defined/);
  });
});

describe('RedisRateLimiter', () => {
  it('propagates Redis failures instead of refusing', async () => {
    const redis = new Redis(clusterServices.redisUrl);
    const prefix = `${PREFIX}broken:`;
    const limiter = new RedisRateLimiter({ redis, keyPrefix: prefix });
    const rule: RateRule = { name: 'wrong-type', points: 1, durationS: 60 };
    try {
      await redis.hset(`${prefix}rl:wrong-type:k`, 'not', 'a counter');
      await expect(limiter.consume(rule, 'k')).rejects.toThrow(/WRONGTYPE/);
    } finally {
      await deleteKeys(redis, prefix);
      await redis.quit();
    }
  });

  it('shares one window between nodes', async () => {
    const redisA = new Redis(clusterServices.redisUrl);
    const redisB = new Redis(clusterServices.redisUrl);
    const prefix = `${PREFIX}shared:`;
    const rule: RateRule = { name: 'shared', points: 2, durationS: 60 };
    try {
      const a = new RedisRateLimiter({ redis: redisA, keyPrefix: prefix });
      const b = new RedisRateLimiter({ redis: redisB, keyPrefix: prefix });
      expect((await a.consume(rule, 'k')).allowed).toBe(true);
      expect((await b.consume(rule, 'k')).allowed).toBe(true);
      expect((await a.consume(rule, 'k')).allowed).toBe(false);
      await b.reset(rule, 'k');
      expect((await a.consume(rule, 'k')).allowed).toBe(true);
    } finally {
      await deleteKeys(redisA, prefix);
      await Promise.all([redisA.quit(), redisB.quit()]);
    }
  });
});
