/**
 * Standalone SessionStore: the `sessions` table, so a restart loses no session and no
 * revocation. Every read goes to PostgreSQL (a primary-key lookup), which keeps one
 * truth without cache invalidation. Rows outlive their session until the control plane's
 * retention sweep deletes them (deleteExpired).
 */

import type { Sql } from '../db/index.js';
import { isSessionId, parseReason, parseSessionRecord, parseUserId } from './session-record.js';
import type { SessionRecord, SessionStore } from './session-store.js';

interface SessionRow {
  id: string;
  user_id: number;
  device_id: string;
  ip_address: string;
  created_at: Date;
  last_used_at: Date;
  expires_at: Date;
  revoked_at: Date | null;
  revoked_reason: string | null;
}

function toRecord(row: SessionRow): SessionRecord {
  return {
    sessionId: row.id,
    userId: row.user_id,
    deviceId: row.device_id,
    ipAddress: row.ip_address,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    revokedReason: row.revoked_reason,
  };
}

export class PgSessionStore implements SessionStore {
  constructor(private readonly sql: Sql) {}

  async save(input: SessionRecord): Promise<void> {
    const record = parseSessionRecord(input);
    // A stored revocation wins over the incoming record (see SessionStore.save).
    await this.sql`
      insert into sessions (id, user_id, device_id, ip_address, created_at, last_used_at, expires_at, revoked_at, revoked_reason)
      values (${record.sessionId}, ${record.userId}, ${record.deviceId}, ${record.ipAddress}, ${record.createdAt},
              ${record.lastUsedAt}, ${record.expiresAt}, ${record.revokedAt}, ${record.revokedReason})
      on conflict (id) do update set
        user_id = excluded.user_id,
        device_id = excluded.device_id,
        ip_address = excluded.ip_address,
        created_at = excluded.created_at,
        last_used_at = excluded.last_used_at,
        expires_at = excluded.expires_at,
        revoked_at = coalesce(sessions.revoked_at, excluded.revoked_at),
        revoked_reason = case when sessions.revoked_at is null then excluded.revoked_reason else sessions.revoked_reason end`;
  }

  async get(sessionId: string): Promise<SessionRecord | null> {
    if (!isSessionId(sessionId)) return null;
    const rows = await this.sql<SessionRow[]>`
      select * from sessions where id = ${sessionId} and expires_at > ${new Date()}`;
    const row = rows[0];
    return row ? toRecord(row) : null;
  }

  async revoke(sessionId: string, reason: string): Promise<boolean> {
    const why = parseReason(reason);
    if (!isSessionId(sessionId)) return false;
    const now = new Date();
    // The `revoked_at is null` guard makes concurrent revokes race on the row lock: one wins.
    const rows = await this.sql`
      update sessions set revoked_at = ${now}, revoked_reason = ${why}
      where id = ${sessionId} and revoked_at is null and expires_at > ${now}
      returning id`;
    return rows.length > 0;
  }

  async revokeAllForUser(userId: number, reason: string): Promise<string[]> {
    const user = parseUserId(userId);
    const why = parseReason(reason);
    const now = new Date();
    const rows = await this.sql<{ id: string }[]>`
      update sessions set revoked_at = ${now}, revoked_reason = ${why}
      where user_id = ${user} and revoked_at is null and expires_at > ${now}
      returning id`;
    return rows.map((row) => row.id);
  }

  async listForUser(userId: number): Promise<SessionRecord[]> {
    const user = parseUserId(userId);
    const rows = await this.sql<SessionRow[]>`
      select * from sessions where user_id = ${user} and expires_at > ${new Date()}
      order by created_at, id`;
    return rows.map(toRecord);
  }

  /**
   * The retention sweep: deletes at most `limit` sessions that expired or were revoked more than
   * `retainMs` ago, and returns how many. Revoked sessions are kept that long (not deleted at once)
   * so a save racing the revocation finds the revocation and cannot bring the session back.
   */
  async deleteExpired(retainMs: number, limit: number): Promise<number> {
    const result = await this.sql`
      delete from sessions where id in (
        select id from sessions
        where least(expires_at, revoked_at) < now() - ${retainMs}::double precision * interval '1 millisecond'
        limit ${limit}
        for update skip locked)`;
    return result.count;
  }

  /** The connection pool belongs to the caller. */
  async close(): Promise<void> {}
}
