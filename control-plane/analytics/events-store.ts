/**
 * The audience events in PostgreSQL: one insert for a batch of bus events, each stored once per
 * dedupe key (every control plane hears the bus), and the stored rows returned so only the control
 * plane that stored an event republishes it for the live rpcs.
 */
import type { AnalyticsEventWire, RecordedAnalyticsEvent } from '../../common/contracts/index.js';
import type { Sql } from '../../common/db/index.js';

interface InsertedRow {
  id: number;
  dedupe_key: string | null;
  ord: number;
}

export async function insertAudienceEvents(
  sql: Sql,
  events: readonly AnalyticsEventWire[],
): Promise<RecordedAnalyticsEvent[]> {
  if (events.length === 0) return [];
  const rows = events.map((event, ord) => ({
    ord,
    event_type: event.type,
    user_id: event.user_id,
    stream_id: event.stream_id,
    track_id: event.track_id,
    session_id: event.session_id,
    anon_id: event.anon_id,
    country: event.country,
    values: JSON.stringify(event.values),
    properties: JSON.stringify(event.properties),
    occurred_at: event.occurred_at,
    dedupe_key: event.dedupe_key,
  }));
  // One statement for the batch: jsonb_to_recordset keeps it parameterised (a single JSON value).
  const inserted = await sql<InsertedRow[]>`
    insert into analytics_events
      (event_type, user_id, stream_id, track_id, session_id, anon_id, country, "values", properties,
       occurred_at, dedupe_key)
    select event_type, user_id, stream_id, track_id, session_id, anon_id, country, "values"::jsonb,
           properties::jsonb, occurred_at, dedupe_key
    from jsonb_to_recordset(${sql.json(rows)}) as r(
      ord int, event_type text, user_id bigint, stream_id bigint, track_id bigint, session_id text,
      anon_id text, country text, "values" text, properties text, occurred_at timestamptz, dedupe_key text)
    order by ord
    on conflict (dedupe_key) where dedupe_key is not null do nothing
    returning id, dedupe_key, 0 as ord`;
  // `returning` cannot name the source row; match by dedupe key, and keyless rows by their order.
  const byKey = new Map(events.filter((e) => e.dedupe_key).map((e) => [e.dedupe_key, e]));
  const keyless = events.filter((e) => !e.dedupe_key);
  let nextKeyless = 0;
  const recorded: RecordedAnalyticsEvent[] = [];
  for (const row of inserted) {
    const event = row.dedupe_key ? byKey.get(row.dedupe_key) : keyless[nextKeyless++];
    if (event) recorded.push({ ...event, id: Number(row.id) });
  }
  return recorded;
}

/**
 * The retention sweep's share: raw events older than `retainMs`, oldest first. The roll-ups stay;
 * a stream's hours are rolled up within minutes of its end, long before its events expire.
 */
export async function deleteExpiredAnalyticsEvents(
  sql: Sql,
  retainMs: number,
  limit: number,
): Promise<number> {
  const cutoff = new Date(Date.now() - retainMs);
  const result = await sql`
    delete from analytics_events where id in (
      select id from analytics_events where occurred_at < ${cutoff} order by occurred_at limit ${limit})`;
  return result.count;
}
