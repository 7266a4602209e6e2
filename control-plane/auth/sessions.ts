/**
 * Login sessions: opening one (login), rotating its tokens (refresh), closing it
 * (logout, reuse detection, an administrator's revocation), and the events each step
 * publishes on `auth.sessions.<userId>` for StreamUserSessions. A closed session is also
 * broadcast to every token cache, which acknowledge it before the close returns
 * (./invalidations.ts).
 */
import { randomUUID } from 'node:crypto';
import {
  type SessionEventPayload,
  type SessionEventType,
  sessionEventSubject,
  UnauthenticatedError,
} from '../../common/contracts/index.js';
import type { Sql } from '../../common/db/index.js';
import type { Config, Logger } from '../../common/index.js';
import {
  type EventBus,
  isSessionActive,
  type SessionRecord,
  type SessionStore,
} from '../../common/ports/index.js';
import { type IssuedAccessToken, issueAccessToken } from './access-tokens.js';
import type { Invalidations } from './invalidations.js';
import { revokeRefreshTokens, rotateRefreshToken, storeRefreshToken } from './refresh-tokens.js';
import type { SigningKeys } from './signing-keys.js';
import { getUserById, type UserRecord } from './users.js';

export interface SessionDeps {
  config: Pick<Config, 'ACCESS_TOKEN_TTL_S' | 'REFRESH_TOKEN_TTL_S'>;
  sql: Sql;
  sessions: SessionStore;
  bus: EventBus;
  keys: SigningKeys;
  log: Logger;
  /** Tells the token caches of a closed session, and waits for them. */
  invalidations: Pick<Invalidations, 'broadcast'>;
}

export interface SessionTokens {
  sessionId: string;
  access: IssuedAccessToken;
  refreshToken: string;
}

export interface ClientInfo {
  deviceId: string;
  ipAddress: string;
}

/** Events are a notification, not the record: a failed publish is logged and the operation stands. */
async function publish(deps: SessionDeps, type: SessionEventType, session: SessionRecord): Promise<void> {
  try {
    const event: SessionEventPayload = {
      type,
      session: {
        ...session,
        createdAt: session.createdAt.toISOString(),
        lastUsedAt: session.lastUsedAt.toISOString(),
        expiresAt: session.expiresAt.toISOString(),
        revokedAt: session.revokedAt?.toISOString() ?? null,
      },
    };
    await deps.bus.publish(sessionEventSubject(session.userId), event);
  } catch (error) {
    deps.log.warn({ err: error, sessionId: session.sessionId, type }, 'could not publish a session event');
  }
}

function accessFor(deps: SessionDeps, user: UserRecord, sessionId: string): Promise<IssuedAccessToken> {
  return issueAccessToken(
    deps.keys,
    { userId: user.id, sessionId, roles: user.roles, email: user.email, username: user.username },
    deps.config.ACCESS_TOKEN_TTL_S,
  );
}

const refreshExpiry = (deps: SessionDeps, from = Date.now()) =>
  new Date(from + deps.config.REFRESH_TOKEN_TTL_S * 1000);

export async function openSession(
  deps: SessionDeps,
  user: UserRecord,
  client: ClientInfo,
): Promise<SessionTokens> {
  const now = new Date();
  const record: SessionRecord = {
    sessionId: randomUUID(),
    userId: user.id,
    deviceId: client.deviceId,
    ipAddress: client.ipAddress,
    createdAt: now,
    lastUsedAt: now,
    expiresAt: refreshExpiry(deps, now.getTime()),
    revokedAt: null,
    revokedReason: null,
  };
  await deps.sessions.save(record);
  const refreshToken = await storeRefreshToken(deps.sql, record, record.expiresAt);
  const access = await accessFor(deps, user, record.sessionId);
  await publish(deps, 'created', record);
  return { sessionId: record.sessionId, access, refreshToken };
}

const INVALID_REFRESH: Record<string, string> = {
  unknown: 'invalid refresh token',
  revoked: 'invalid refresh token: revoked',
  expired: 'invalid refresh token: expired',
  'session closed': 'invalid refresh token: session revoked',
};

/** Rotates the refresh token; a reused one revokes its session and every token of it. */
export async function refreshSession(
  deps: SessionDeps,
  refreshToken: string,
  client: Partial<ClientInfo>,
): Promise<{ tokens: SessionTokens; user: UserRecord }> {
  const expiresAt = refreshExpiry(deps);
  let session: SessionRecord | null = null;
  const rotation = await rotateRefreshToken(deps.sql, refreshToken, expiresAt, async (sessionId) => {
    session = await deps.sessions.get(sessionId);
    return isSessionActive(session);
  });
  if (rotation.kind === 'reused') {
    await closeSession(deps, rotation.owner.sessionId, 'refresh token reuse');
    deps.log.warn(
      { sessionId: rotation.owner.sessionId, userId: rotation.owner.userId },
      'refresh token reuse',
    );
    throw new UnauthenticatedError('refresh token reuse detected; session revoked');
  }
  if (rotation.kind === 'invalid') throw new UnauthenticatedError(INVALID_REFRESH[rotation.reason]);
  const current = session as SessionRecord | null;
  if (!current) throw new UnauthenticatedError(INVALID_REFRESH['session closed']);
  const updated: SessionRecord = {
    ...current,
    deviceId: client.deviceId || current.deviceId,
    ipAddress: client.ipAddress || current.ipAddress,
    lastUsedAt: new Date(),
    expiresAt,
  };
  await deps.sessions.save(updated);
  const user = await getUserById(deps.sql, rotation.owner.userId);
  const access = await accessFor(deps, user, updated.sessionId);
  await publish(deps, 'refreshed', updated);
  return { tokens: { sessionId: updated.sessionId, access, refreshToken: rotation.token }, user };
}

/**
 * Revokes the session in the SessionStore and all its refresh tokens, then tells every token
 * cache and waits for their acknowledgements, so no check anywhere accepts a token of it once
 * this returns. Returns false when it was already closed.
 */
export async function closeSession(deps: SessionDeps, sessionId: string, reason: string): Promise<boolean> {
  const revoked = await deps.sessions.revoke(sessionId, reason);
  await revokeRefreshTokens(deps.sql, sessionId);
  const record = await deps.sessions.get(sessionId);
  if (revoked && record) await publish(deps, 'revoked', record);
  // Also when it was closed already: a concurrent close may still be waiting for the caches,
  // and this call too must not return before they refuse the session.
  if (record?.revokedAt) {
    await deps.invalidations.broadcast({
      type: 'sessions-revoked',
      userId: record.userId,
      sessionIds: [sessionId],
      reason: record.revokedReason ?? reason,
    });
  }
  return revoked;
}

/**
 * Revokes every open session of a user (an administrator's action, or "sign out everywhere"),
 * with the same guarantee as closeSession. Returns the ids revoked.
 */
export async function closeUserSessions(
  deps: SessionDeps,
  userId: number,
  reason: string,
): Promise<string[]> {
  const revoked = await deps.sessions.revokeAllForUser(userId, reason);
  for (const sessionId of revoked) await revokeRefreshTokens(deps.sql, sessionId);
  const records = await deps.sessions.listForUser(userId);
  for (const record of records) {
    if (revoked.includes(record.sessionId)) await publish(deps, 'revoked', record);
  }
  if (revoked.length > 0) {
    await deps.invalidations.broadcast({ type: 'sessions-revoked', userId, sessionIds: revoked, reason });
  }
  return revoked;
}
