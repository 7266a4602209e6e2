/**
 * Cluster SessionStore in Redis: every node sees a revocation at once.
 *
 * One hash per session (`<prefix>session:<id>`) that Redis expires at `expiresAt`, and one
 * set per user (`<prefix>user-sessions:<userId>`) of session ids, pruned lazily when a member
 * has expired. Writes that must be atomic (save without un-revoking, revoke once) are Lua
 * scripts. Dates are stored as epoch milliseconds, which is exactly a JS Date's precision.
 *
 * The Redis client belongs to the caller (it is shared with other ports); close() leaves it open.
 */
import type { Redis, Result } from 'ioredis';
import { z } from 'zod';
import { isSessionId, parseReason, parseSessionRecord, parseUserId } from './session-record.js';
import type { SessionRecord, SessionStore } from './session-store.js';

/**
 * KEYS: session hash, user set. ARGV: session id, expiresAt ms, then field/value pairs.
 * Keeps an existing revocation, expires the user set no earlier than its newest session.
 */
const SAVE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiresAt = tonumber(ARGV[2])
local revokedAt = redis.call('HGET', KEYS[1], 'revokedAt')
local revokedReason = redis.call('HGET', KEYS[1], 'revokedReason')
redis.call('DEL', KEYS[1])
if expiresAt <= now then
  redis.call('SREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if revokedAt then
  redis.call('HSET', KEYS[1], 'revokedAt', revokedAt, 'revokedReason', revokedReason)
end
redis.call('PEXPIREAT', KEYS[1], expiresAt)
redis.call('SADD', KEYS[2], ARGV[1])
local ttl = redis.call('PTTL', KEYS[2])
if ttl < 0 or now + ttl < expiresAt then
  redis.call('PEXPIREAT', KEYS[2], expiresAt)
end
return 1
`;

/** KEYS: session hash. ARGV: revokedAt ms, reason, and optionally the user id it must belong to. */
const REVOKE = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'revokedAt') == 1 then return 0 end
if ARGV[3] and redis.call('HGET', KEYS[1], 'userId') ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'revokedAt', ARGV[1], 'revokedReason', ARGV[2])
return 1
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    vezaSessionSave(
      sessionKey: string,
      userKey: string,
      ...args: (string | number)[]
    ): Result<number, Context>;
    vezaSessionRevoke(sessionKey: string, ...args: (string | number)[]): Result<number, Context>;
  }
}

const epochMs = z
  .string()
  .regex(/^-?\d+$/)
  .transform((value) => new Date(Number(value)));

const hashSchema = z.object({
  userId: z.string().regex(/^\d+$/).transform(Number),
  deviceId: z.string(),
  ipAddress: z.string(),
  createdAt: epochMs,
  lastUsedAt: epochMs,
  expiresAt: epochMs,
  revokedAt: epochMs.optional(),
  revokedReason: z.string().optional(),
});

export interface RedisSessionStoreOptions {
  redis: Redis;
  /** Prepended to every key, e.g. "veza:". */
  keyPrefix: string;
}

export class RedisSessionStore implements SessionStore {
  private readonly redis: Redis;
  private readonly prefix: string;

  constructor(options: RedisSessionStoreOptions) {
    this.redis = options.redis;
    this.prefix = options.keyPrefix;
    // defineCommand sends EVALSHA and falls back to EVAL once per connection.
    this.redis.defineCommand('vezaSessionSave', { numberOfKeys: 2, lua: SAVE });
    this.redis.defineCommand('vezaSessionRevoke', { numberOfKeys: 1, lua: REVOKE });
  }

  async save(input: SessionRecord): Promise<void> {
    const record = parseSessionRecord(input);
    const fields: (string | number)[] = [
      'userId',
      record.userId,
      'deviceId',
      record.deviceId,
      'ipAddress',
      record.ipAddress,
      'createdAt',
      record.createdAt.getTime(),
      'lastUsedAt',
      record.lastUsedAt.getTime(),
      'expiresAt',
      record.expiresAt.getTime(),
    ];
    if (record.revokedAt) {
      fields.push(
        'revokedAt',
        record.revokedAt.getTime(),
        'revokedReason',
        record.revokedReason ?? 'revoked',
      );
    }
    await this.redis.vezaSessionSave(
      this.sessionKey(record.sessionId),
      this.userKey(record.userId),
      record.sessionId,
      record.expiresAt.getTime(),
      ...fields,
    );
  }

  async get(sessionId: string): Promise<SessionRecord | null> {
    if (!isSessionId(sessionId)) return null;
    return this.decode(sessionId, await this.redis.hgetall(this.sessionKey(sessionId)));
  }

  async revoke(sessionId: string, reason: string): Promise<boolean> {
    const why = parseReason(reason);
    if (!isSessionId(sessionId)) return false;
    return (await this.redis.vezaSessionRevoke(this.sessionKey(sessionId), Date.now(), why)) === 1;
  }

  async revokeAllForUser(userId: number, reason: string): Promise<string[]> {
    const user = parseUserId(userId);
    const why = parseReason(reason);
    const ids = (await this.redis.smembers(this.userKey(user))).filter(isSessionId);
    if (ids.length === 0) return [];
    const now = Date.now();
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.vezaSessionRevoke(this.sessionKey(id), now, why, String(user));
    const results = (await pipeline.exec()) ?? [];
    return ids.filter((_, index) => {
      const [error, value] = results[index] ?? [null, 0];
      if (error) throw error;
      return value === 1;
    });
  }

  async listForUser(userId: number): Promise<SessionRecord[]> {
    const user = parseUserId(userId);
    const userKey = this.userKey(user);
    const ids = (await this.redis.smembers(userKey)).filter(isSessionId);
    if (ids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hgetall(this.sessionKey(id));
    const results = (await pipeline.exec()) ?? [];
    const records: SessionRecord[] = [];
    const gone: string[] = [];
    ids.forEach((id, index) => {
      const [error, value] = results[index] ?? [null, {}];
      if (error) throw error;
      const record = this.decode(id, value as Record<string, string>);
      if (record?.userId === user) records.push(record);
      else gone.push(id);
    });
    if (gone.length > 0) await this.redis.srem(userKey, ...gone);
    return records.sort(
      (a, b) =>
        a.createdAt.getTime() - b.createdAt.getTime() ||
        (a.sessionId < b.sessionId ? -1 : a.sessionId > b.sessionId ? 1 : 0),
    );
  }

  async close(): Promise<void> {}

  private sessionKey(sessionId: string): string {
    return `${this.prefix}session:${sessionId}`;
  }

  private userKey(userId: number): string {
    return `${this.prefix}user-sessions:${userId}`;
  }

  /** An empty hash is a missing (or just expired) session. */
  private decode(sessionId: string, hash: Record<string, string>): SessionRecord | null {
    if (Object.keys(hash).length === 0) return null;
    const parsed = hashSchema.parse(hash);
    // Redis expires lazily to the millisecond; the port promises an expired session is gone.
    if (parsed.expiresAt.getTime() <= Date.now()) return null;
    return {
      sessionId,
      userId: parsed.userId,
      deviceId: parsed.deviceId,
      ipAddress: parsed.ipAddress,
      createdAt: parsed.createdAt,
      lastUsedAt: parsed.lastUsedAt,
      expiresAt: parsed.expiresAt,
      revokedAt: parsed.revokedAt ?? null,
      revokedReason: parsed.revokedAt ? (parsed.revokedReason ?? null) : null,
    };
  }
}
