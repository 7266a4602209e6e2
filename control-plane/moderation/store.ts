/**
 * PostgreSQL access for moderation: the reports queue. The messages a report points at stay
 * the chat module's: the queue asks it for them (see ModeratedChat).
 */

import type { Sql, TransactionSql } from '../../common/db/index.js';
import type { ChatMessage, ModerationItem } from '../../proto/gen/veza/chat/chat.js';

type Db = Sql | TransactionSql;

export type ReportStatus = 'open' | 'dismissed' | 'actioned' | 'approved';
export type TargetType = 'message' | 'user' | 'stream';

export interface ReportRow {
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
}

/** The reported message (as written, even once flagged or deleted) is the chat module's to give. */
export function toModerationItem(row: ReportRow, message: ChatMessage | undefined): ModerationItem {
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
    message,
    createdAt: row.created_at,
    resolvedBy: row.resolved_by ?? 0,
    resolvedAt: row.resolved_at ?? undefined,
    resolutionNote: row.resolution_note,
  };
}

interface NewReport {
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
  return {
    async getReport(id: number): Promise<ReportRow | null> {
      const [row] = await sql<ReportRow[]>`select * from reports where id = ${id}`;
      return row ?? null;
    },

    /** Stores a report; a user's second open report of the same target returns the first (created: false). */
    async insertReport(input: NewReport): Promise<{ id: number; created: boolean }> {
      const [row] = await sql<{ id: number }[]>`
        insert into reports (source, reporter_id, target_type, target_id, room_id, reason, details, score, reasons)
        values (${input.source}, ${input.reporterId}, ${input.targetType}, ${input.targetId}, ${input.roomId},
                ${input.reason}, ${input.details}, ${input.score}, ${sql.array([...input.reasons])}::text[])
        on conflict (reporter_id, target_type, target_id) where status = 'open' and reporter_id is not null
        do nothing
        returning id`;
      if (row) return { id: row.id, created: true };
      const [existing] = await sql<{ id: number }[]>`
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
    }): Promise<{ rows: ReportRow[]; hasMore: boolean }> {
      const before = options.beforeId > 0 ? options.beforeId : Number.MAX_SAFE_INTEGER;
      const rows = await sql<ReportRow[]>`
        select * from reports
        where id < ${before}
          and (${options.status} = 'all'
               or (${options.status} = 'open' and status = 'open')
               or (${options.status} = 'resolved' and status <> 'open'))
        order by id desc
        limit ${options.limit + 1}`;
      return { rows: rows.slice(0, options.limit), hasMore: rows.length > options.limit };
    },

    /** Resolves an open report; null when it is not open (any more). */
    async resolveReport(
      id: number,
      input: { status: Exclude<ReportStatus, 'open'>; actorId: number; note: string },
      db: Db = sql,
    ): Promise<ReportRow | null> {
      const [row] = await db<ReportRow[]>`
        update reports
        set status = ${input.status}, resolved_by = ${input.actorId}, resolved_at = now(), resolution_note = ${input.note}
        where id = ${id} and status = 'open'
        returning *`;
      return row ?? null;
    },
  };
}
