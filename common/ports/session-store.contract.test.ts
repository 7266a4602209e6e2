import { randomBytes, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../contracts/index.js';
import { clusterServices, createTestDatabase } from '../testing/index.js';
import { PgSessionStore } from './pg-session-store.js';
import { RedisSessionStore } from './redis-session-store.js';
import { isSessionActive, type SessionRecord, type SessionStore } from './session-store.js';

/** One key namespace per run of this file, so parallel runs on one Redis never collide. */
const PREFIX = `veza-test-${randomBytes(6).toString('hex')}:`;

interface Harness {
  store: SessionStore;
  /** A user the sessions may belong to (a real row where the store has a foreign key). */
  newUser(): Promise<number>;
  close(): Promise<void>;
}

const adapters: { name: string; create(): Promise<Harness> }[] = [
  {
    name: 'postgres',
    async create() {
      const db = await createTestDatabase('embedded');
      const store = new PgSessionStore(db.sql);
      return {
        store,
        async newUser() {
          const name = `u${randomBytes(6).toString('hex')}`;
          const [row] = await db.sql<{ id: number }[]>`
            insert into users (email, email_normalized, username, username_normalized, password_hash, roles)
            values (${`${name}@example.test`}, ${`${name}@example.test`}, ${name}, ${name}, 'x', ${['listener']})
            returning id`;
          return row!.id;
        },
        async close() {
          await store.close();
          await db.drop();
        },
      };
    },
  },
  {
    name: 'redis',
    async create() {
      const redis = new Redis(clusterServices.redisUrl);
      const store = new RedisSessionStore({ redis, keyPrefix: PREFIX });
      let lastUser = 0;
      return {
        store,
        newUser: async () => ++lastUser,
        async close() {
          await store.close();
          const stream = redis.scanStream({ match: `${PREFIX}*`, count: 100 });
          for await (const keys of stream) {
            if ((keys as string[]).length > 0) await redis.del(...(keys as string[]));
          }
          await redis.quit();
        },
      };
    },
  },
];

const HOUR = 3600_000;

function session(userId: number, overrides: Partial<SessionRecord> = {}): SessionRecord {
  const now = Date.now();
  return {
    sessionId: randomUUID(),
    userId,
    deviceId: 'device-1',
    ipAddress: '203.0.113.7',
    // Odd milliseconds prove the round trip keeps them.
    createdAt: new Date(now - 5 * HOUR + 123),
    lastUsedAt: new Date(now - HOUR + 457),
    expiresAt: new Date(now + 24 * HOUR + 789),
    revokedAt: null,
    revokedReason: null,
    ...overrides,
  };
}

describe.each(adapters)('SessionStore contract: $name', (adapter) => {
  let h: Harness;
  beforeAll(async () => {
    h = await adapter.create();
  });
  afterAll(async () => {
    await h?.close();
  });

  it('round-trips a record with exact dates', async () => {
    const record = session(await h.newUser());
    await h.store.save(record);
    const loaded = await h.store.get(record.sessionId);
    expect(loaded).toEqual(record);
    expect(loaded?.createdAt.getTime()).toBe(record.createdAt.getTime());
    expect(loaded?.expiresAt.getTime()).toBe(record.expiresAt.getTime());
    expect(isSessionActive(loaded)).toBe(true);
  });

  it('replaces a record on save', async () => {
    const record = session(await h.newUser());
    await h.store.save(record);
    const touched = { ...record, lastUsedAt: new Date(Date.now() + 1), ipAddress: '198.51.100.1' };
    await h.store.save(touched);
    expect(await h.store.get(record.sessionId)).toEqual(touched);
  });

  it('returns null for unknown and malformed ids', async () => {
    expect(await h.store.get(randomUUID())).toBeNull();
    expect(await h.store.get('not-a-uuid')).toBeNull();
    expect(await h.store.get(randomUUID().toUpperCase())).toBeNull();
  });

  it('revokes exactly once, even concurrently', async () => {
    const record = session(await h.newUser());
    await h.store.save(record);
    const results = await Promise.all(
      Array.from({ length: 5 }, () => h.store.revoke(record.sessionId, 'logout')),
    );
    expect(results.filter(Boolean)).toHaveLength(1);
    expect(await h.store.revoke(record.sessionId, 'again')).toBe(false);

    const loaded = await h.store.get(record.sessionId);
    expect(loaded?.revokedReason).toBe('logout');
    expect(loaded?.revokedAt).toBeInstanceOf(Date);
    expect(Math.abs(Date.now() - (loaded?.revokedAt?.getTime() ?? 0))).toBeLessThan(60_000);
    expect(isSessionActive(loaded)).toBe(false);
  });

  it('keeps a revocation when the session is saved again', async () => {
    const record = session(await h.newUser());
    await h.store.save(record);
    await h.store.revoke(record.sessionId, 'password changed');
    await h.store.save({ ...record, lastUsedAt: new Date() });
    const loaded = await h.store.get(record.sessionId);
    expect(loaded?.revokedReason).toBe('password changed');
    expect(isSessionActive(loaded)).toBe(false);
  });

  it('does not revoke unknown sessions', async () => {
    expect(await h.store.revoke(randomUUID(), 'logout')).toBe(false);
    expect(await h.store.revoke('nope', 'logout')).toBe(false);
  });

  it('revokes every open session of one user', async () => {
    const user = await h.newUser();
    const other = await h.newUser();
    const open = [session(user), session(user)];
    const closed = session(user, { revokedAt: new Date(Date.now() - HOUR), revokedReason: 'logout' });
    const foreign = session(other);
    for (const record of [...open, closed, foreign]) await h.store.save(record);

    const revoked = await h.store.revokeAllForUser(user, 'password changed');
    expect([...revoked].sort()).toEqual(open.map((r) => r.sessionId).sort());
    expect(await h.store.revokeAllForUser(user, 'password changed')).toEqual([]);

    for (const record of open)
      expect((await h.store.get(record.sessionId))?.revokedReason).toBe('password changed');
    expect(await h.store.get(closed.sessionId)).toEqual(closed);
    expect(isSessionActive(await h.store.get(foreign.sessionId))).toBe(true);
  });

  it("lists a user's sessions oldest first, revoked ones included", async () => {
    const user = await h.newUser();
    const base = Date.now() - 10 * HOUR;
    const records = [3, 1, 2].map((n) => session(user, { createdAt: new Date(base + n * 1000) }));
    for (const record of records) await h.store.save(record);
    await h.store.save(session(await h.newUser()));
    await h.store.revoke(records[0]!.sessionId, 'logout');

    const listed = await h.store.listForUser(user);
    expect(listed.map((r) => r.createdAt.getTime())).toEqual([base + 1000, base + 2000, base + 3000]);
    expect(listed.map((r) => r.sessionId)).toEqual(
      [records[1], records[2], records[0]].map((r) => r!.sessionId),
    );
    expect(listed[2]?.revokedReason).toBe('logout');
    expect(await h.store.listForUser(await h.newUser())).toEqual([]);
  });

  it('treats an expired session as gone', async () => {
    const user = await h.newUser();
    const expired = session(user, { expiresAt: new Date(Date.now() - 1000) });
    await h.store.save(expired);
    expect(await h.store.get(expired.sessionId)).toBeNull();
    expect(await h.store.listForUser(user)).toEqual([]);
    expect(await h.store.revoke(expired.sessionId, 'logout')).toBe(false);
    expect(await h.store.revokeAllForUser(user, 'logout')).toEqual([]);
  });

  it('validates records', async () => {
    const user = await h.newUser();
    await expect(
      h.store.save(session(user, { sessionId: randomUUID().toUpperCase() })),
    ).rejects.toMatchObject({
      code: 'invalid_argument',
      details: { field: 'sessionId' },
    });
    await expect(h.store.save(session(user, { revokedAt: new Date() }))).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    await expect(h.store.save(session(user, { createdAt: new Date(Number.NaN) }))).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    await expect(h.store.revoke(randomUUID(), '')).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(h.store.listForUser(0)).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

describe('isSessionActive', () => {
  const now = new Date('2030-01-01T00:00:00.000Z');
  const active = session(1, { expiresAt: new Date(now.getTime() + 1) });

  it('is true only for an unrevoked, unexpired session', () => {
    expect(isSessionActive(active, now)).toBe(true);
    expect(isSessionActive(null, now)).toBe(false);
    expect(isSessionActive({ ...active, expiresAt: now }, now)).toBe(false);
    expect(isSessionActive({ ...active, revokedAt: now, revokedReason: 'logout' }, now)).toBe(false);
  });
});

describe('RedisSessionStore', () => {
  it('lets Redis expire the session and the user set with the newest session', async () => {
    const redis = new Redis(clusterServices.redisUrl);
    const prefix = `${PREFIX}ttl:`;
    const store = new RedisSessionStore({ redis, keyPrefix: prefix });
    try {
      const later = session(42, { expiresAt: new Date(Date.now() + 48 * HOUR + 1) });
      const sooner = session(42);
      await store.save(later);
      await store.save(sooner);
      expect(await redis.pexpiretime(`${prefix}session:${sooner.sessionId}`)).toBe(
        sooner.expiresAt.getTime(),
      );
      expect(await redis.pexpiretime(`${prefix}user-sessions:42`)).toBe(later.expiresAt.getTime());
    } finally {
      await redis.del(`${prefix}user-sessions:42`, ...(await redis.keys(`${prefix}session:*`)));
      await redis.quit();
    }
  });
});
