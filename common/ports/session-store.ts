/**
 * SessionStore port: the live state of login sessions (a session is one refresh-token
 * family), checked on every token validation so a revocation takes effect at once.
 *
 * Adapters: PostgreSQL with an in-process cache (standalone: survives restarts) and
 * Redis (cluster: every node sees a revocation immediately).
 */

export interface SessionRecord {
  sessionId: string;
  userId: number;
  deviceId: string;
  ipAddress: string;
  createdAt: Date;
  lastUsedAt: Date;
  expiresAt: Date;
  revokedAt: Date | null;
  revokedReason: string | null;
}

/**
 * Session ids are lowercase UUIDs (crypto.randomUUID()); any other id is an unknown session.
 * An expired session is gone: get() returns null, listForUser() and the revokes skip it.
 */
export interface SessionStore {
  /**
   * Creates or replaces the session. Never un-revokes: when the stored session is already
   * revoked it stays revoked with its first reason, so a save racing a revoke cannot undo it.
   */
  save(record: SessionRecord): Promise<void>;
  get(sessionId: string): Promise<SessionRecord | null>;
  /** Marks the session revoked; returns false when it was unknown or already revoked (true exactly once). */
  revoke(sessionId: string, reason: string): Promise<boolean>;
  /** Revokes every open session of a user (e.g. after a password change); returns the ids revoked. */
  revokeAllForUser(userId: number, reason: string): Promise<string[]>;
  /**
   * The user's unexpired sessions, revoked ones included, oldest first. (The PostgreSQL adapter
   * forgets a revoked session SESSION_RETENTION_DAYS after its revocation; Redis at its expiry.)
   */
  listForUser(userId: number): Promise<SessionRecord[]>;
  close(): Promise<void>;
}

export function isSessionActive(record: SessionRecord | null, now = new Date()): record is SessionRecord {
  return record !== null && record.revokedAt === null && record.expiresAt.getTime() > now.getTime();
}
