/**
 * Email confirmation: a single-use random token mailed as a link; only its hash is stored.
 */

import { InvalidArgumentError } from '../../common/contracts/index.js';
import type { Sql, TransactionSql } from '../../common/db/index.js';
import { hashOpaqueToken, newOpaqueToken } from './refresh-tokens.js';
import { markEmailConfirmed, type UserRecord } from './users.js';

export const CONFIRMATION_TTL_S = 48 * 3600;

export async function createConfirmation(db: Sql | TransactionSql, userId: number): Promise<string> {
  const token = newOpaqueToken();
  await db`
    insert into email_confirmations (token_hash, user_id, expires_at)
    values (${hashOpaqueToken(token)}, ${userId}, ${new Date(Date.now() + CONFIRMATION_TTL_S * 1000)})`;
  return token;
}

export function confirmationLink(publicUrl: string, token: string): string {
  return `${publicUrl}/auth/confirm?token=${encodeURIComponent(token)}`;
}

/**
 * Confirms the address the token was sent to. Following the link twice is harmless: a
 * used token of an already confirmed user confirms again.
 */
export function consumeConfirmation(sql: Sql, token: string): Promise<UserRecord> {
  return sql.begin(async (tx) => {
    const [row] = await tx<{ user_id: number; expires_at: Date; used_at: Date | null }[]>`
      select user_id, expires_at, used_at from email_confirmations
      where token_hash = ${hashOpaqueToken(token)} for update`;
    if (!row) throw new InvalidArgumentError('unknown confirmation token', 'token');
    if (!row.used_at && row.expires_at.getTime() <= Date.now()) {
      throw new InvalidArgumentError('confirmation token expired; ask for a new one', 'token');
    }
    if (!row.used_at) {
      await tx`update email_confirmations set used_at = now() where token_hash = ${hashOpaqueToken(token)}`;
    }
    return markEmailConfirmed(tx, row.user_id);
  });
}

/**
 * The retention sweep: deletes at most `limit` confirmation tokens (used or not) that expired
 * more than `retainMs` ago; returns how many. Following such a link then says "unknown
 * confirmation token" instead of "expired" (or, when it was used, confirming again).
 */
export async function deleteExpiredConfirmations(sql: Sql, retainMs: number, limit: number): Promise<number> {
  const result = await sql`
    delete from email_confirmations where token_hash in (
      select token_hash from email_confirmations
      where expires_at < now() - ${retainMs}::double precision * interval '1 millisecond'
      limit ${limit}
      for update skip locked)`;
  return result.count;
}
