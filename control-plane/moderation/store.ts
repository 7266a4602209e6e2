/**
 * PostgreSQL access for moderation: room sanctions (mutes, bans), the reports queue and the
 * audit log. The queue shows moderators a message as it was written, even once it is
 * flagged or deleted, which is why it reads chat_messages itself.
 */

import type { Sql, TransactionSql } from '../../common/db/index.js';
import type { ChatMessage, ModerationItem } from '../../proto/gen/veza/chat/chat.js';

type Db = Sql | TransactionSql;

export interface Sanction {
  expiresAt: Date | null;
  reason: string;
}

export interface ActiveSanctions {
  ban: Sanction | null;
  mute: Sanction | null;
}

export type ReportStatus = 'open' | 'dismissed' | 'actioned' | 'approved';
export type TargetType = 'message' | 'user' | 'stream';

interface ReportRow {
  id: number;
  source: 'user' | 'automatic';
  reporter_id: number | null;
  target_type: TargetType;
  target_id: number;
  room_id: number | null;
  reason: string;
  details: string;
  score: number | null;
  reasons: string[];
  status: ReportStatus;
  resolved_by: number | null;
  resolved_at: Date | null;
  resolution_note: string;
  created_at: Date;
  m_id: number | null;
  m_room_id: number | null;
  m_user_id: number | null;
  m_username: string | null;
  m_content: string | null;
  m_message_type: string | null;
  m_metadata: Buffer | null;
  m_reply_to_id: number | null;
  m_client_message_id: string | null;
  m_deleted_at: Date | null;
  m_created_at: Date | null;
  m_updated_at: Date | null;
}

function messageOf(row: ReportRow): ChatMessage | undefined {
  if (row.m_id === null) return undefined;
  return {
    messageId: row.m_id,
    roomId: row.m_room_id ?? 0,
    userId: row.m_user_id ?? 0,
    content: row.m_content ?? '',
    messageType: row.m_message_type ?? '',
    metadata: row.m_metadata ?? Buffer.alloc(0),
    replyToId: row.m_reply_to_id ?? 0,
    createdAt: row.m_created_at ?? undefined,
    updatedAt: row.m_updated_at ?? undefined,
    clientMessageId: row.m_client_message_id ?? '',
    username: row.m_username ?? '',
    deleted: row.m_deleted_at !== null,
  };
}

export function toModerationItem(row: ReportRow): ModerationItem {
  return {
    reportId: row.id,
    source: row.source,
    targetType: row.target_type,
    targetId: row.target_id,
    roomId: row.room_id ?? 0,
    reporterId: row.reporter_id ?? 0,
    reason: row.reason,
    details: row.details,
    score: row.score ?? 0,
    reasons: row.reasons,
    status: row.status,
    message: messageOf(row),
    createdAt: row.created_at,
    resolvedBy: row.resolved_by ?? 0,
    resolvedAt: row.resolved_at ?? undefined,
    resolutionNote: row.resolution_note,
  };
}

export interface NewReport {
  source: 'user' | 'automatic';
  reporterId: number | null;
  targetType: TargetType;
  targetId: number;
  roomId: number | null;
  reason: string;
  details: string;
  score: number | null;
  reasons: readonly string[];
}

export function createModerationStore(sql: Sql) {
  const selectReports = (db: Db) => db`
    select r.*,
           m.id as m_id, m.room_id as m_room_id, m.user_id as m_user_id, u.username as m_username,
           m.content as m_content, m.message_type as m_message_type, m.metadata as m_metadata,
           m.reply_to_id as m_reply_to_id, m.client_message_id as m_client_message_id,
           m.deleted_at as m_deleted_at, m.created_at as m_created_at, m.updated_at as m_updated_at
    from reports r
    left join chat_messages m on r.target_type = 'message' and m.id = r.target_id
    left join users u on u.id = m.user_id`;

  const getReport = async (db: Db, id: number): Promise<ModerationItem | null> => {
    const [row] = await db<ReportRow[]>`${selectReports(db)} where r.id = ${id}`;
    return row ? toModerationItem(row) : null;
  };

  return {
    getReport: (id: number) => getReport(sql, id),

    async sanctionsOf(roomId: number, userId: number, db: Db = sql): Promise<ActiveSanctions> {
      const [row] = await db<
        {
          ban_reason: string | null;
          ban_expires: Date | null;
          banned: boolean;
          mute_reason: string | null;
          mute_expires: Date | null;
        }[]
      >`
        select b.reason as ban_reason, b.expires_at as ban_expires, b.user_id is not null as banned,
               m.reason as mute_reason, m.expires_at as mute_expires
        from (select 1) one
        left join chat_room_bans b
          on b.room_id = ${roomId} and b.user_id = ${userId} and (b.expires_at is null or b.expires_at > now())
        left join chat_room_mutes m
          on m.room_id = ${roomId} and m.user_id = ${userId} and m.expires_at > now()`;
      return {
        ban: row?.banned ? { expiresAt: row.ban_expires, reason: row.ban_reason ?? '' } : null,
        mute: row?.mute_expires ? { expiresAt: row.mute_expires, reason: row.mute_reason ?? '' } : null,
      };
    },

    async mute(input: {
      roomId: number;
      userId: number;
      actorId: number;
      durationS: number;
      reason: string;
    }) {
      const [row] = await sql<{ expires_at: Date }[]>`
        insert into chat_room_mutes (room_id, user_id, muted_by, reason, expires_at)
        values (${input.roomId}, ${input.userId}, ${input.actorId}, ${input.reason},
                now() + make_interval(secs => ${input.durationS}))
        on conflict (room_id, user_id) do update
          set muted_by = excluded.muted_by, reason = excluded.reason, created_at = now(), expires_at = excluded.expires_at
        returning expires_at`;
      if (!row) throw new Error('mute upsert returned nothing');
      return row.expires_at;
    },

    async unmute(roomId: number, userId: number): Promise<boolean> {
      const rows =
        await sql`delete from chat_room_mutes where room_id = ${roomId} and user_id = ${userId} returning 1`;
      return rows.length > 0;
    },

    /** Bans and removes the membership in one transaction: a banned user is no member. */
    async ban(input: {
      roomId: number;
      userId: number;
      actorId: number;
      durationS: number | null;
      reason: string;
    }): Promise<Date | null> {
      return sql.begin(async (tx) => {
        const expires = input.durationS === null ? null : input.durationS;
        const [row] = await tx<{ expires_at: Date | null }[]>`
          insert into chat_room_bans (room_id, user_id, banned_by, reason, expires_at)
          values (${input.roomId}, ${input.userId}, ${input.actorId}, ${input.reason},
                  case when ${expires}::int is null then null else now() + make_interval(secs => ${expires}::int) end)
          on conflict (room_id, user_id) do update
            set banned_by = excluded.banned_by, reason = excluded.reason, created_at = now(), expires_at = excluded.expires_at
          returning expires_at`;
        await tx`delete from chat_room_members where room_id = ${input.roomId} and user_id = ${input.userId}`;
        return row?.expires_at ?? null;
      });
    },

    async unban(roomId: number, userId: number): Promise<boolean> {
      const rows =
        await sql`delete from chat_room_bans where room_id = ${roomId} and user_id = ${userId} returning 1`;
      return rows.length > 0;
    },

    /** Stores a report; a user's second open report of the same target returns the first (created: false). */
    async insertReport(input: NewReport, db: Db = sql): Promise<{ id: number; created: boolean }> {
      const [row] = await db<{ id: number }[]>`
        insert into reports (source, reporter_id, target_type, target_id, room_id, reason, details, score, reasons)
        values (${input.source}, ${input.reporterId}, ${input.targetType}, ${input.targetId}, ${input.roomId},
                ${input.reason}, ${input.details}, ${input.score}, ${db.array([...input.reasons])}::text[])
        on conflict (reporter_id, target_type, target_id) where status = 'open' and reporter_id is not null
        do nothing
        returning id`;
      if (row) return { id: row.id, created: true };
      const [existing] = await db<{ id: number }[]>`
        select id from reports
        where reporter_id = ${input.reporterId} and target_type = ${input.targetType}
          and target_id = ${input.targetId} and status = 'open'`;
      if (!existing) throw new Error('report vanished between insert and select');
      return { id: existing.id, created: false };
    },

    async listReports(options: {
      status: 'open' | 'resolved' | 'all';
      limit: number;
      beforeId: number;
    }): Promise<{ items: ModerationItem[]; hasMore: boolean }> {
      const before = options.beforeId > 0 ? options.beforeId : Number.MAX_SAFE_INTEGER;
      const rows = await sql<ReportRow[]>`
        ${selectReports(sql)}
        where r.id < ${before}
          and (${options.status} = 'all'
               or (${options.status} = 'open' and r.status = 'open')
               or (${options.status} = 'resolved' and r.status <> 'open'))
        order by r.id desc
        limit ${options.limit + 1}`;
      return {
        items: rows.slice(0, options.limit).map(toModerationItem),
        hasMore: rows.length > options.limit,
      };
    },

    /** Resolves an open report; null when it is not open (any more). */
    async resolveReport(
      id: number,
      input: { status: Exclude<ReportStatus, 'open'>; actorId: number; note: string },
      db: Db = sql,
    ): Promise<ModerationItem | null> {
      const [row] = await db<{ id: number }[]>`
        update reports
        set status = ${input.status}, resolved_by = ${input.actorId}, resolved_at = now(), resolution_note = ${input.note}
        where id = ${id} and status = 'open'
        returning id`;
      return row ? getReport(db, row.id) : null;
    },
  };
}

export type ModerationStore = ReturnType<typeof createModerationStore>;
