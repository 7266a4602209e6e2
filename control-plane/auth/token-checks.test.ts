/**
 * The control plane's token checks from memory, on the real PostgreSQL SessionStore and the
 * in-process bus: a repeated check loads nothing, memory is bounded (LRU), a revocation or a
 * role change is in effect once the call that made it returned (even with a load running that
 * read the old state), and what no invalidation reaches is read again after the maximum age.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createLogger, metricsRegistry } from '../../common/index.js';
import {
  FsBlobStorage,
  MemoryEventBus,
  PgSessionStore,
  type SessionRecord,
  type SessionStore,
} from '../../common/ports/index.js';
import { createTestDatabase, type TestDatabase } from '../../common/testing/index.js';
import { keyEncryptionKey } from './key-encryption.js';
import { closeSession, openSession, type SessionDeps } from './sessions.js';
import { loadSigningKeys, type SigningKeys } from './signing-keys.js';
import { startTokenCaching, type TokenCacheLimits, type TokenCaching } from './token-checks.js';
import { changeRole, createUser, type UserRecord } from './users.js';

const log = createLogger({ level: 'silent' });
let db: TestDatabase;
let keys: SigningKeys;
let store: PgSessionStore;
let bus: MemoryEventBus;
let user: UserRecord;
const closers: Array<() => Promise<void>> = [];

beforeAll(async () => {
  db = await createTestDatabase('embedded');
  keys = await loadSigningKeys(db.sql, log, keyEncryptionKey(randomBytes(32), 'a test secret'));
  store = new PgSessionStore(db.sql);
  bus = new MemoryEventBus({ log });
  user = await createUser(db.sql, {
    email: 'cache@example.com',
    username: 'cache',
    passwordHash: 'unused',
    roles: ['listener', 'broadcaster'],
  });
});
afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await bus?.close();
  await db?.drop();
});

/**
 * A SessionStore whose next read, once `holdNext()` was called, reads PostgreSQL but answers
 * only after `release()`: a load that read a session open and reports it after a revocation.
 */
class HeldReads implements SessionStore {
  #hold: Promise<void> | null = null;
  #release: () => void = () => {};
  /** The held read has read PostgreSQL and waits for release(). */
  holding = false;

  constructor(private readonly inner: SessionStore) {}
  holdNext(): void {
    this.#hold = new Promise((resolve) => {
      this.#release = resolve;
    });
  }
  release(): void {
    this.#release();
  }
  async get(sessionId: string): Promise<SessionRecord | null> {
    const hold = this.#hold;
    this.#hold = null;
    const record = await this.inner.get(sessionId);
    if (hold) {
      this.holding = true;
      await hold;
    }
    return record;
  }
  save = (record: SessionRecord) => this.inner.save(record);
  revoke = (sessionId: string, reason: string) => this.inner.revoke(sessionId, reason);
  revokeAllForUser = (userId: number, reason: string) => this.inner.revokeAllForUser(userId, reason);
  listForUser = (userId: number) => this.inner.listForUser(userId);
  close = async () => {};
}

async function start(limits: Partial<TokenCacheLimits> = {}, sessions: SessionStore = store) {
  const caching = await startTokenCaching({
    sql: db.sql,
    sessions,
    keys,
    blobs: new FsBlobStorage({ root: '/nonexistent', baseUrl: 'http://127.0.0.1' }),
    bus,
    log,
    nodeId: `checks-${randomBytes(3).toString('hex')}`,
    intervalMs: 20,
    limits,
  });
  closers.push(() => caching.close());
  const deps: SessionDeps = {
    config: { ACCESS_TOKEN_TTL_S: 300, REFRESH_TOKEN_TTL_S: 3600 },
    sql: db.sql,
    sessions: store,
    bus,
    keys,
    log,
    invalidations: caching.invalidations,
  };
  return { caching, deps };
}

async function loads(): Promise<number> {
  const metric = await metricsRegistry().getSingleMetric('veza_auth_cache_loads_total')?.get();
  return (metric?.values ?? []).reduce((sum, value) => sum + value.value, 0);
}

/** Until the holder is trusted (one interval after it announced itself) and answers `token` from memory. */
async function cached(caching: TokenCaching, token: string): Promise<void> {
  await vi.waitFor(async () => {
    await caching.checks.check(token);
    await caching.checks.user(user.id);
    const before = await loads();
    await caching.checks.check(token);
    await caching.checks.user(user.id);
    expect(await loads()).toBe(before);
  });
}

const signIn = (deps: SessionDeps) => openSession(deps, user, { deviceId: 'test', ipAddress: '127.0.0.1' });

describe('token checks from memory', () => {
  it('answer a repeated check without reading storage, and say who the user is now', async () => {
    const { caching, deps } = await start();
    const session = await signIn(deps);
    await cached(caching, session.access.token);
    const before = await loads();
    for (let i = 0; i < 10; i++) {
      expect(await caching.checks.verifier(session.access.token)).toMatchObject({
        userId: user.id,
        sessionId: session.sessionId,
        roles: ['listener', 'broadcaster'],
      });
    }
    expect(await loads()).toBe(before);
  });

  it('keep at most the configured number of sessions: one not used since it was loaded goes first', async () => {
    const { caching, deps } = await start({ sessions: 2 });
    const [a, b, c] = [await signIn(deps), await signIn(deps), await signIn(deps)];
    // a is loaded and used again; b is loaded only.
    await cached(caching, a.access.token);
    await caching.checks.check(b.access.token);
    // c needs room: a gets a second chance, b (not used since it came in) is dropped.
    await caching.checks.check(c.access.token);
    let before = await loads();
    await caching.checks.check(c.access.token);
    await caching.checks.check(a.access.token);
    expect(await loads()).toBe(before);
    before = await loads();
    await caching.checks.check(b.access.token);
    expect(await loads()).toBe(before + 1);
  });

  it('refuse a revoked session once the revocation returned, also against a load that read it open', async () => {
    const held = new HeldReads(store);
    const { caching, deps } = await start({}, held);
    await cached(caching, (await signIn(deps)).access.token);
    const session = await signIn(deps);
    const token = session.access.token;

    held.holdNext();
    // A check that misses reads the session while it is open, and answers after the revocation.
    const early = caching.checks.check(token);
    await vi.waitFor(() => expect(held.holding).toBe(true));
    expect(await closeSession(deps, session.sessionId, 'logout')).toBe(true);
    // Checks that start now are refused at once: they do not join the load that read it open.
    await expect(caching.checks.check(token)).rejects.toThrow('invalid token: session revoked');
    held.release();
    // The early check ran alongside the revocation, so either answer is right for it...
    await early.catch(() => undefined);
    // ...but what its load read was not kept.
    await expect(caching.checks.check(token)).rejects.toThrow('invalid token: session revoked');
  });

  it('hold the new roles once the role change was broadcast', async () => {
    const { caching, deps } = await start();
    const session = await signIn(deps);
    await cached(caching, session.access.token);
    expect((await caching.checks.verifier(session.access.token)).roles).toContain('broadcaster');

    const changed = await changeRole(db.sql, {
      userId: user.id,
      role: 'broadcaster',
      granted: false,
      actor: { userId: null, label: 'test' },
    });
    await caching.invalidations.broadcast({
      type: 'user-changed',
      userId: user.id,
      user: { username: changed.username, email: changed.email, roles: changed.roles },
    });
    expect((await caching.checks.verifier(session.access.token)).roles).toEqual(['listener']);
    expect((await caching.checks.user(user.id))?.info.roles).toEqual(['listener']);
    await changeRole(db.sql, {
      userId: user.id,
      role: 'broadcaster',
      granted: true,
      actor: { userId: null, label: 'test' },
    });
  });

  it('read again after the maximum age what no invalidation reached', async () => {
    const maxAgeMs = 300;
    const { caching, deps } = await start({ maxAgeMs });
    const session = await signIn(deps);
    await cached(caching, session.access.token);
    // Straight to the store, as nothing in the platform does: no invalidation.
    await store.revoke(session.sessionId, 'test');
    await sleep(maxAgeMs);
    await expect(caching.checks.check(session.access.token)).rejects.toThrow(
      'invalid token: session revoked',
    );
  });
});
