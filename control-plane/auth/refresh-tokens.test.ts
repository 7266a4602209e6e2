/**
 * Refresh-token rotation and reuse detection, through the session lifecycle with the
 * real PostgreSQL SessionStore and the in-process bus.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSessionEvent, sessionEventSubject } from '../../common/contracts/index.js';
import { createLogger } from '../../common/index.js';
import { MemoryEventBus, PgSessionStore } from '../../common/ports/index.js';
import { createTestDatabase, type TestDatabase } from '../../common/testing/index.js';
import { type Invalidations, startInvalidations } from './invalidations.js';
import { keyEncryptionKey } from './key-encryption.js';
import { hashOpaqueToken } from './refresh-tokens.js';
import { closeSession, openSession, refreshSession, type SessionDeps } from './sessions.js';
import { loadSigningKeys } from './signing-keys.js';
import { createUser, type UserRecord } from './users.js';

const log = createLogger({ level: 'silent' });
let db: TestDatabase;
let deps: SessionDeps;
let user: UserRecord;
let bus: MemoryEventBus;
let invalidations: Invalidations;

beforeAll(async () => {
  db = await createTestDatabase('embedded');
  bus = new MemoryEventBus({ log });
  invalidations = startInvalidations({ bus, log, intervalMs: 50 });
  deps = {
    config: { ACCESS_TOKEN_TTL_S: 300, REFRESH_TOKEN_TTL_S: 3600 },
    sql: db.sql,
    sessions: new PgSessionStore(db.sql),
    bus,
    keys: await loadSigningKeys(db.sql, log, keyEncryptionKey(randomBytes(32), 'a test secret')),
    log,
    invalidations,
  };
  user = await createUser(db.sql, {
    email: 'rt@example.com',
    username: 'rt',
    passwordHash: 'x',
    roles: ['listener'],
  });
});
afterAll(async () => {
  invalidations?.close();
  await bus.close();
  await db?.drop();
});

async function refreshError(token: string): Promise<string> {
  try {
    await refreshSession(deps, token, {});
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('refresh succeeded');
}

async function familyState(sessionId: string) {
  return db.sql<{ used: boolean; revoked: boolean }[]>`
    select used_at is not null as used, revoked_at is not null as revoked
    from refresh_tokens where session_id = ${sessionId} order by issued_at, token_hash`;
}

describe('refresh tokens', () => {
  it('are 32 random bytes, stored only as their SHA-256', async () => {
    const opened = await openSession(deps, user, { deviceId: 'd', ipAddress: '127.0.0.1' });
    expect(Buffer.from(opened.refreshToken, 'base64url')).toHaveLength(32);
    const rows = await db.sql<
      { token_hash: string }[]
    >`select token_hash from refresh_tokens where session_id = ${opened.sessionId}`;
    expect(rows).toEqual([{ token_hash: hashOpaqueToken(opened.refreshToken) }]);
    expect(JSON.stringify(await db.sql`select * from refresh_tokens`)).not.toContain(opened.refreshToken);
  });

  it('rotate within the session on each use, sliding its expiry', async () => {
    const opened = await openSession(deps, user, { deviceId: 'laptop', ipAddress: '127.0.0.1' });
    const before = await deps.sessions.get(opened.sessionId);
    const first = await refreshSession(deps, opened.refreshToken, { ipAddress: '192.0.2.10' });
    const second = await refreshSession(deps, first.tokens.refreshToken, {});
    expect(new Set([opened.refreshToken, first.tokens.refreshToken, second.tokens.refreshToken]).size).toBe(
      3,
    );
    expect(second.tokens.sessionId).toBe(opened.sessionId);
    expect(second.user.id).toBe(user.id);
    expect(await familyState(opened.sessionId)).toEqual([
      { used: true, revoked: false },
      { used: true, revoked: false },
      { used: false, revoked: false },
    ]);
    const after = await deps.sessions.get(opened.sessionId);
    expect(after?.ipAddress).toBe('192.0.2.10');
    expect(after?.deviceId).toBe('laptop');
    expect(after?.expiresAt.getTime()).toBeGreaterThanOrEqual(before?.expiresAt.getTime() ?? Infinity);
  });

  it('revoke the whole family when a spent token is used again', async () => {
    const types: Array<string | undefined> = [];
    let sawRevoked: () => void = () => {};
    const revokedEvent = new Promise<void>((resolve) => {
      sawRevoked = resolve;
    });
    const subscription = bus.subscribe(sessionEventSubject(user.id), (payload) => {
      const type = parseSessionEvent(payload)?.type;
      types.push(type);
      if (type === 'revoked') sawRevoked();
    });
    const opened = await openSession(deps, user, { deviceId: '', ipAddress: '' });
    const next = await refreshSession(deps, opened.refreshToken, {});

    expect(await refreshError(opened.refreshToken)).toBe('refresh token reuse detected; session revoked');
    expect(await familyState(opened.sessionId)).toEqual([
      { used: true, revoked: true },
      { used: false, revoked: true },
    ]);
    expect(await deps.sessions.get(opened.sessionId)).toMatchObject({ revokedReason: 'refresh token reuse' });
    // The legitimate holder's newer token is dead too, and stays reported as revoked.
    expect(await refreshError(next.tokens.refreshToken)).toBe('invalid refresh token: revoked');
    expect(await refreshError(opened.refreshToken)).toBe('refresh token reuse detected; session revoked');

    await revokedEvent;
    expect(types).toEqual(['created', 'refreshed', 'revoked']);
    subscription.unsubscribe();
  });

  it('count two concurrent uses of one token as a reuse, not two rotations', async () => {
    const opened = await openSession(deps, user, { deviceId: '', ipAddress: '' });
    const results = await Promise.allSettled([
      refreshSession(deps, opened.refreshToken, {}),
      refreshSession(deps, opened.refreshToken, {}),
    ]);
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((result) => result.status === 'rejected');
    expect((rejected as PromiseRejectedResult).reason.message).toBe(
      'refresh token reuse detected; session revoked',
    );
    expect((await deps.sessions.get(opened.sessionId))?.revokedAt).not.toBeNull();
  });

  it('refuse unknown and expired tokens and tokens of a closed session, changing nothing', async () => {
    expect(await refreshError('never-issued')).toBe('invalid refresh token');

    const expired = await openSession(deps, user, { deviceId: '', ipAddress: '' });
    await db.sql`update refresh_tokens set expires_at = now() - interval '1 second' where session_id = ${expired.sessionId}`;
    expect(await refreshError(expired.refreshToken)).toBe('invalid refresh token: expired');
    expect(await familyState(expired.sessionId)).toEqual([{ used: false, revoked: false }]);

    const closed = await openSession(deps, user, { deviceId: '', ipAddress: '' });
    expect(await closeSession(deps, closed.sessionId, 'logout')).toBe(true);
    expect(await closeSession(deps, closed.sessionId, 'logout')).toBe(false);
    expect(await refreshError(closed.refreshToken)).toBe('invalid refresh token: revoked');

    // Revoked in the SessionStore only (e.g. by another node): the token must not rotate.
    const elsewhere = await openSession(deps, user, { deviceId: '', ipAddress: '' });
    await deps.sessions.revoke(elsewhere.sessionId, 'revoked elsewhere');
    expect(await refreshError(elsewhere.refreshToken)).toBe('invalid refresh token: session revoked');
    expect(await familyState(elsewhere.sessionId)).toEqual([{ used: false, revoked: false }]);
  });
});
