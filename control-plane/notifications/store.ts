/** PostgreSQL access for notifications. */

import type { Sql } from '../../common/db/index.js';
import type { Notification } from '../../proto/gen/veza/notification/notification.js';
import { existingUserIds, userIdsWithRoles } from '../auth/index.js';

interface NotificationRow {
  id: number;
  user_id: number;
  notification_type: string;
  title: string;
  body: string;
  data: unknown;
  read_at: Date | null;
  created_at: Date;
}

function toNotification(row: NotificationRow): Notification {
  return {
    notificationId: row.id,
    userId: row.user_id,
    notificationType: row.notification_type,
    title: row.title,
    body: row.body,
    data:
      row.data === null || row.data === undefined
        ? Buffer.alloc(0)
        : Buffer.from(JSON.stringify(row.data), 'utf8'),
    read: row.read_at !== null,
    createdAt: row.created_at,
  };
}

interface NewNotification {
  type: string;
  title: string;
  body: string;
  /** A JSON value, stored as jsonb; null for none. */
  data: unknown;
  /** One notification per user and key; a second insert with the same key creates nothing. */
  dedupeKey?: string;
}

type JsonValue = Parameters<Sql['json']>[0];

export function createNotificationStore(sql: Sql) {
  const jsonOrNull = (data: unknown) =>
    data === null || data === undefined ? null : sql.json(data as JsonValue);

  return {
    /**
     * Inserts one notification per user; returns the ones created (deduplicated ones, and
     * ids that name no user, are left out).
     */
    async insertFor(userIds: readonly number[], input: NewNotification): Promise<Notification[]> {
      const recipients = await existingUserIds(sql, userIds);
      if (recipients.length === 0) return [];
      const rows = await sql<NotificationRow[]>`
        insert into notifications (user_id, notification_type, title, body, data, dedupe_key)
        select r.id, ${input.type}, ${input.title}, ${input.body}, ${jsonOrNull(input.data)}, ${input.dedupeKey ?? null}
        from unnest(${sql.array(recipients)}::bigint[]) as r(id)
        on conflict (user_id, dedupe_key) where dedupe_key is not null do nothing
        returning *`;
      return rows.map(toNotification);
    },

    /** Every user holding one of the roles (moderators and admins for the moderation queue). */
    usersWithRoles: (roles: readonly string[]): Promise<number[]> => userIdsWithRoles(sql, roles),

    async page(
      userId: number,
      options: { page: number; pageSize: number; unreadOnly: boolean },
    ): Promise<{ items: Notification[]; total: number; unread: number }> {
      const offset = (options.page - 1) * options.pageSize;
      const rows = await sql<NotificationRow[]>`
        select * from notifications
        where user_id = ${userId} and (${!options.unreadOnly} or read_at is null)
        order by id desc
        limit ${options.pageSize} offset ${offset}`;
      const [counts] = await sql<{ total: number; unread: number }[]>`
        select count(*) filter (where ${!options.unreadOnly} or read_at is null)::int as total,
               count(*) filter (where read_at is null)::int as unread
        from notifications where user_id = ${userId}`;
      return { items: rows.map(toNotification), total: counts?.total ?? 0, unread: counts?.unread ?? 0 };
    },

    /** The user's notifications after an id, oldest first, for a resuming stream. */
    async after(userId: number, afterId: number, limit: number): Promise<Notification[]> {
      const rows = await sql<NotificationRow[]>`
        select * from notifications where user_id = ${userId} and id > ${afterId}
        order by id asc limit ${limit}`;
      return rows.map(toNotification);
    },

    /** Marks the given ids (only the user's own) or all of the user's notifications; returns how many changed. */
    async markRead(userId: number, ids: readonly number[] | 'all'): Promise<number> {
      const rows =
        ids === 'all'
          ? await sql`update notifications set read_at = now() where user_id = ${userId} and read_at is null returning id`
          : await sql`
              update notifications set read_at = now()
              where user_id = ${userId} and read_at is null and id = any(${sql.array([...ids])}::bigint[])
              returning id`;
      return rows.length;
    },
  };
}
