/**
 * Refresh tokens: 32 random bytes, stored only as their SHA-256. Each use rotates the
 * token within its session (the "family"); a second use of a spent token means it was
 * copied, so the whole family is revoked.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Sql, TransactionSql } from '../../common/db/index.js';

export function newOpaqueToken(): string {
  return randomBytes(32).toString('base64url');
}

export function hashOpaqueToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export interface RefreshTokenOwner {
  sessionId: string;
  userId: number;
}

export async function storeRefreshToken(
  sql: Sql | TransactionSql,
  owner: RefreshTokenOwner,
  expiresAt: Date,
): Promise<string> {
  const token = newOpaqueToken();
  await sql`
    insert into refresh_tokens (token_hash, session_id, user_id, expires_at)
    values (${hashOpaqueToken(token)}, ${owner.sessionId}, ${owner.userId}, ${expiresAt})`;
  return token;
}

export type Rotation =
  | { kind: 'rotated'; owner: RefreshTokenOwner; token: string; expiresAt: Date }
  | { kind: 'reused'; owner: RefreshTokenOwner }
  | { kind: 'invalid'; reason: 'unknown' | 'revoked' | 'expired' | 'session closed' };

interface TokenRow {
  session_id: string;
  user_id: number;
  expires_at: Date;
  used_at: Date | null;
  revoked_at: Date | null;
}

/**
 * Spends `presented` and issues its successor in the same session. The row lock makes
 * two concurrent uses of one token count as a reuse rather than two rotations.
 * `sessionOpen` is asked before rotating: a closed session rotates nothing.
 */
export function rotateRefreshToken(
  sql: Sql,
  presented: string,
  nextExpiresAt: Date,
  sessionOpen: (sessionId: string) => Promise<boolean>,
): Promise<Rotation> {
  const hash = hashOpaqueToken(presented);
  return sql.begin(async (tx): Promise<Rotation> => {
    const [row] = await tx<TokenRow[]>`
      select session_id, user_id, expires_at, used_at, revoked_at
      from refresh_tokens where token_hash = ${hash} for update`;
    if (!row) return { kind: 'invalid', reason: 'unknown' };
    const owner = { sessionId: row.session_id, userId: row.user_id };
    if (row.used_at) {
      await revokeRefreshTokens(tx, owner.sessionId);
      return { kind: 'reused', owner };
    }
    if (row.revoked_at) return { kind: 'invalid', reason: 'revoked' };
    if (row.expires_at.getTime() <= Date.now()) return { kind: 'invalid', reason: 'expired' };
    if (!(await sessionOpen(owner.sessionId))) return { kind: 'invalid', reason: 'session closed' };
    await tx`update refresh_tokens set used_at = now() where token_hash = ${hash}`;
    const token = await storeRefreshToken(tx, owner, nextExpiresAt);
    return { kind: 'rotated', owner, token, expiresAt: nextExpiresAt };
  });
}

/** Revokes every token of a session; returns how many were still live. */
export async function revokeRefreshTokens(sql: Sql | TransactionSql, sessionId: string): Promise<number> {
  const rows = await sql`
    update refresh_tokens set revoked_at = now()
    where session_id = ${sessionId} and revoked_at is null returning 1`;
  return rows.length;
}

/** The session a refresh token belongs to, whatever its state. */
export async function refreshTokenOwner(sql: Sql, token: string): Promise<RefreshTokenOwner | null> {
  const [row] = await sql<{ session_id: string; user_id: number }[]>`
    select session_id, user_id from refresh_tokens where token_hash = ${hashOpaqueToken(token)}`;
  return row ? { sessionId: row.session_id, userId: row.user_id } : null;
}

/**
 * The retention sweep: deletes at most `limit` tokens that expired or were revoked (with their
 * session) more than `retainMs` ago; returns how many. A spent token stays until then, so
 * presenting it again is still recognised as a reuse (and revokes its family) for `retainMs`
 * after it expired or its family was closed; after that it is simply unknown.
 */
export async function deleteDeadRefreshTokens(sql: Sql, retainMs: number, limit: number): Promise<number> {
  const result = await sql`
    delete from refresh_tokens where token_hash in (
      select token_hash from refresh_tokens
      where least(expires_at, revoked_at) < now() - ${retainMs}::double precision * interval '1 millisecond'
      limit ${limit}
      for update skip locked)`;
  return result.count;
}
