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

export interface SessionStore {
  save(record: SessionRecord): Promise<void>;
  get(sessionId: string): Promise<SessionRecord | null>;
  /** Marks the session revoked; returns false when it was unknown or already revoked. */
  revoke(sessionId: string, reason: string): Promise<boolean>;
  /** Revokes every open session of a user (e.g. after a password change); returns the ids revoked. */
  revokeAllForUser(userId: number, reason: string): Promise<string[]>;
  listForUser(userId: number): Promise<SessionRecord[]>;
  close(): Promise<void>;
}

export function isSessionActive(record: SessionRecord | null, now = new Date()): record is SessionRecord {
  return record !== null && record.revokedAt === null && record.expiresAt.getTime() > now.getTime();
}
