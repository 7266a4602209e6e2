import type { Sql } from '../../common/db/index.js';
/**
 * Analytics events in PostgreSQL: append-only rows, queried by type, user and time.
 * Other control-plane modules record through this (the seed's "Track upload event"), the
 * AnalyticsService through its rpcs.
 */

export interface AnalyticsEventInput {
  eventType: string;
  /** null for an anonymous event. */
  userId: number | null;
  properties: Record<string, string>;
  /** When it happened; now when absent. */
  occurredAt?: Date;
}

export interface AnalyticsEvent {
  id: number;
  eventType: string;
  userId: number | null;
  properties: Record<string, string>;
  occurredAt: Date;
}

export interface AnalyticsQuery {
  eventType: string | null;
  userId: number | null;
  from: Date | null;
  to: Date | null;
  /** Only these streams' events (null: any). */
  streamIds?: number[] | null;
  /** Only this track's events (null: any). */
  trackId?: number | null;
  /** How many of the newest matching events to return (the counts cover all of them). */
  limit: number;
}

export interface AnalyticsSummary {
  total: number;
  countsByType: Record<string, number>;
  events: AnalyticsEvent[];
}

export interface Analytics {
  record(event: AnalyticsEventInput): Promise<number>;
  query(query: AnalyticsQuery): Promise<AnalyticsSummary>;
}

interface EventRow {
  id: number;
  event_type: string;
  user_id: number | null;
  properties: Record<string, string>;
  occurred_at: Date;
}

export function createAnalytics(sql: Sql): Analytics {
  return {
    async record(event) {
      const [row] = await sql<{ id: number }[]>`
        insert into analytics_events (event_type, user_id, properties, occurred_at)
        values (${event.eventType}, ${event.userId}, ${sql.json(event.properties)}, ${event.occurredAt ?? new Date()})
        returning id`;
      if (!row) throw new Error('analytics insert returned no row');
      return row.id;
    },

    async query(query) {
      const where = sql`
        where (${query.eventType}::text is null or event_type = ${query.eventType})
          and (${query.userId}::bigint is null or user_id = ${query.userId})
          and (${query.streamIds ?? null}::bigint[] is null or stream_id = any(${query.streamIds ?? null}::bigint[]))
          and (${query.trackId ?? null}::bigint is null or track_id = ${query.trackId ?? null})
          and (${query.from}::timestamptz is null or occurred_at >= ${query.from})
          and (${query.to}::timestamptz is null or occurred_at < ${query.to})`;
      const counts = await sql<{ event_type: string; n: number }[]>`
        select event_type, count(*)::int as n from analytics_events ${where} group by event_type`;
      const rows = await sql<EventRow[]>`
        select id, event_type, user_id, properties, occurred_at from analytics_events ${where}
        order by occurred_at desc, id desc limit ${query.limit}`;
      const countsByType = Object.fromEntries(counts.map((row) => [row.event_type, row.n]));
      return {
        total: counts.reduce((sum, row) => sum + row.n, 0),
        countsByType,
        events: rows.map((row) => ({
          id: row.id,
          eventType: row.event_type,
          userId: row.user_id,
          properties: row.properties,
          occurredAt: row.occurred_at,
        })),
      };
    },
  };
}
