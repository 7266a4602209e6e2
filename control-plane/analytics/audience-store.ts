/**
 * The audience reads of one stream (or a channel's streams): live figures from the raw events,
 * aggregates and series over a range from the worker's per-minute roll-ups, and the roll-up's own
 * read and write. Only this module touches the analytics tables.
 */
import {
  type AnalyticsMetricName,
  type CountryFigure,
  QUALITY_BUCKETS,
  QUALITY_METRICS,
  type QualityMetric,
  type RollupInput,
  type RollupOutput,
} from '../../common/contracts/index.js';
import type { Sql } from '../../common/db/index.js';

export interface StreamRecord {
  id: number;
  ownerId: number;
  title: string;
  status: string;
  startedAt: Date;
  endedAt: Date | null;
}

export interface LiveFigures {
  streamId: number;
  live: boolean;
  listeners: number;
  listeningMinutes: number;
  bitrateKbps: number | null;
  rttMs: number | null;
  lossPct: number | null;
  /** Most listeners first. */
  countries: CountryFigure[];
  at: Date;
}

export interface Percentiles {
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

export interface AudienceSummary {
  peakListeners: number;
  averageListeners: number;
  listeningMinutes: number;
  uniqueListeners: number;
  countries: CountryFigure[];
  quality: Record<QualityMetric, Percentiles>;
  chatMessages: number;
  reports: number;
  moderatorActions: number;
}

export interface SeriesPoint {
  t: Date;
  v: number;
}

interface SessionRow {
  session_id: string;
  country: string | null;
  joined_at: Date;
  left_at: Date | null;
  duration_ms: number | null;
  user_id: number | null;
  anon_id: string | null;
}

const HOUR_MS = 3_600_000;
const MINUTE_MS = 60_000;

const floorMinute = (date: Date): Date => new Date(Math.floor(date.getTime() / MINUTE_MS) * MINUTE_MS);

function mean(values: number[]): number | null {
  return values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length;
}

/** The value of a bucket: its lower edge (0 below the first), so a loss of 0 stays 0. */
function bucketValue(metric: QualityMetric, bucket: number): number {
  const edges = QUALITY_BUCKETS[metric];
  return bucket === 0 ? 0 : (edges[bucket - 1] ?? 0);
}

export function percentilesOf(metric: QualityMetric, histogram: readonly number[]): Percentiles {
  const total = histogram.reduce((a, b) => a + b, 0);
  if (total === 0) return { p50: null, p95: null, p99: null };
  const at = (q: number) => {
    const rank = Math.ceil(q * total);
    let seen = 0;
    for (let i = 0; i < histogram.length; i++) {
      seen += histogram[i] ?? 0;
      if (seen >= rank) return bucketValue(metric, i);
    }
    return bucketValue(metric, histogram.length - 1);
  };
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

function addHistograms(into: number[], from: readonly number[]): void {
  from.forEach((n, i) => {
    into[i] = (into[i] ?? 0) + n;
  });
}

const byListenersThenMinutes = (a: CountryFigure, b: CountryFigure) =>
  b.listeners - a.listeners || b.minutes - a.minutes || a.country.localeCompare(b.country);

export interface AudienceStore {
  stream(streamId: number): Promise<StreamRecord | null>;
  /** The streams of an owner (all when null), newest first. */
  streams(ownerId: number | null, limit: number): Promise<StreamRecord[]>;
  live(streamId: number, sampleWindowMs: number): Promise<LiveFigures>;
  summary(streamIds: readonly number[], from: Date, to: Date): Promise<AudienceSummary>;
  series(
    streamId: number,
    name: AnalyticsMetricName,
    from: Date,
    to: Date,
    stepMs: number,
  ): Promise<SeriesPoint[]>;
  /** Each stream's peak listeners and listening minutes, from the roll-ups. */
  perStream(streamIds: readonly number[]): Promise<Map<number, { peak: number; minutes: number }>>;
  /** The owner of a track, or null when there is none. */
  trackOwner(trackId: number): Promise<number | null>;
  /** Chat messages of a stream so far (live figures). */
  chatCount(streamId: number): Promise<number>;
  trackCounts(
    trackIds: readonly number[],
    from: Date,
    to: Date,
  ): Promise<{ plays: number; completions: number }>;
  rollupInput(streamId: number, hour: Date): Promise<RollupInput | null>;
  writeRollup(output: RollupOutput): Promise<void>;
  /** Hours of a stream rolled up after it ended. */
  finalHours(streamId: number): Promise<number>;
}

interface StreamRowDb {
  id: number;
  owner_id: number;
  title: string;
  status: string;
  started_at: Date;
  ended_at: Date | null;
}

const toStream = (row: StreamRowDb): StreamRecord => ({
  id: row.id,
  ownerId: row.owner_id,
  title: row.title,
  status: row.status,
  startedAt: row.started_at,
  endedAt: row.ended_at,
});

export function createAudienceStore(sql: Sql): AudienceStore {
  const sessions = (streamId: number, from: Date | null, to: Date | null) => sql<SessionRow[]>`
    select j.session_id, j.country, j.occurred_at as joined_at, l.occurred_at as left_at,
           (l."values"->>'duration_ms')::float8 as duration_ms, j.user_id, j.anon_id
    from analytics_events j
    left join analytics_events l
      on l.stream_id = j.stream_id and l.event_type = 'listener.left' and l.session_id = j.session_id
    where j.stream_id = ${streamId} and j.event_type = 'listener.joined'
      and (${to}::timestamptz is null or j.occurred_at < ${to})
      and (${from}::timestamptz is null or l.occurred_at is null or l.occurred_at >= ${from})`;

  return {
    async stream(streamId) {
      const [row] = await sql<StreamRowDb[]>`
        select id, owner_id, title, status, started_at, ended_at from streams where id = ${streamId}`;
      return row ? toStream(row) : null;
    },

    async streams(ownerId, limit) {
      const rows = await sql<StreamRowDb[]>`
        select id, owner_id, title, status, started_at, ended_at from streams
        where (${ownerId}::bigint is null or owner_id = ${ownerId})
        order by started_at desc, id desc limit ${limit}`;
      return rows.map(toStream);
    },

    async live(streamId, sampleWindowMs) {
      const at = new Date();
      const [stream] = await sql<{ status: string }[]>`select status from streams where id = ${streamId}`;
      const rows = await sessions(streamId, null, null);
      const open = rows.filter((row) => row.left_at === null);
      let listeningMs = 0;
      const countries = new Map<string, CountryFigure>();
      for (const row of rows) {
        const ms =
          row.left_at === null
            ? Math.max(0, at.getTime() - row.joined_at.getTime())
            : (row.duration_ms ?? row.left_at.getTime() - row.joined_at.getTime());
        listeningMs += ms;
        const code = row.country ?? 'ZZ';
        const figure = countries.get(code) ?? { country: code, listeners: 0, minutes: 0 };
        figure.minutes += ms / MINUTE_MS;
        if (row.left_at === null) figure.listeners += 1;
        countries.set(code, figure);
      }
      const openIds = new Set(open.map((row) => row.session_id));
      const samples = await sql<{ session_id: string; values: Record<string, number> }[]>`
        select distinct on (session_id) session_id, "values" from analytics_events
        where stream_id = ${streamId} and event_type = 'quality.listener'
          and occurred_at > ${new Date(at.getTime() - sampleWindowMs)}
        order by session_id, occurred_at desc`;
      const current = samples.filter((row) => openIds.has(row.session_id)).map((row) => row.values);
      const pick = (key: QualityMetric) =>
        mean(current.map((v) => v[key]).filter((v): v is number => typeof v === 'number'));
      return {
        streamId,
        live: stream?.status === 'live',
        listeners: open.length,
        listeningMinutes: listeningMs / MINUTE_MS,
        bitrateKbps: pick('bitrate_kbps'),
        rttMs: pick('rtt_ms'),
        lossPct: pick('loss_pct'),
        countries: [...countries.values()].filter((c) => c.listeners > 0).sort(byListenersThenMinutes),
        at,
      };
    },

    async summary(streamIds, rangeFrom, to) {
      // Roll-ups are per minute: a range starting inside a minute includes that minute.
      const from = floorMinute(rangeFrom);
      const minutes = await sql<
        {
          minute: Date;
          peak_listeners: number;
          listener_seconds: number;
          quality: Record<string, { histogram: number[] }>;
          chat_messages: number;
          reports: number;
          moderator_actions: number;
        }[]
      >`
        select minute, peak_listeners, listener_seconds, quality, chat_messages, reports, moderator_actions
        from analytics_stream_minutes
        where stream_id in ${sql(streamIds)} and minute >= ${from} and minute < ${to}`;
      // Several streams of a channel at the same minute add up.
      const perMinute = new Map<number, { peak: number; seconds: number }>();
      const histograms: Record<QualityMetric, number[]> = { bitrate_kbps: [], rtt_ms: [], loss_pct: [] };
      let chatMessages = 0;
      let reports = 0;
      let moderatorActions = 0;
      for (const row of minutes) {
        const key = row.minute.getTime();
        const slot = perMinute.get(key) ?? { peak: 0, seconds: 0 };
        slot.peak += row.peak_listeners;
        slot.seconds += row.listener_seconds;
        perMinute.set(key, slot);
        for (const metric of QUALITY_METRICS) {
          const histogram = row.quality[metric]?.histogram;
          if (histogram) addHistograms(histograms[metric], histogram);
        }
        chatMessages += row.chat_messages;
        reports += row.reports;
        moderatorActions += row.moderator_actions;
      }
      const slots = [...perMinute.values()];
      const listenerSeconds = slots.reduce((sum, slot) => sum + slot.seconds, 0);
      const fromHour = new Date(Math.floor(from.getTime() / HOUR_MS) * HOUR_MS);
      const [unique] = await sql<{ n: number }[]>`
        select count(distinct listener_key)::int as n from analytics_stream_hour_listeners
        where stream_id in ${sql(streamIds)} and hour >= ${fromHour} and hour < ${to}`;
      const countryRows = await sql<{ country: string; listeners: number; seconds: number }[]>`
        select country, count(distinct listener_key)::int as listeners, sum(listener_seconds)::float8 as seconds
        from analytics_stream_hour_listeners
        where stream_id in ${sql(streamIds)} and hour >= ${fromHour} and hour < ${to}
        group by country`;
      return {
        peakListeners: slots.reduce((max, slot) => Math.max(max, slot.peak), 0),
        averageListeners: slots.length === 0 ? 0 : listenerSeconds / 60 / slots.length,
        listeningMinutes: listenerSeconds / 60,
        uniqueListeners: unique?.n ?? 0,
        countries: countryRows
          .map((row) => ({ country: row.country, listeners: row.listeners, minutes: row.seconds / 60 }))
          .sort((a, b) => b.minutes - a.minutes || b.listeners - a.listeners),
        quality: {
          bitrate_kbps: percentilesOf('bitrate_kbps', histograms.bitrate_kbps),
          rtt_ms: percentilesOf('rtt_ms', histograms.rtt_ms),
          loss_pct: percentilesOf('loss_pct', histograms.loss_pct),
        },
        chatMessages,
        reports,
        moderatorActions,
      };
    },

    async series(streamId, name, rangeFrom, to, stepMs) {
      const from = floorMinute(rangeFrom);
      const rows = await sql<
        {
          minute: Date;
          peak_listeners: number;
          listener_seconds: number;
          quality: Record<string, { sum: number; n: number }>;
          chat_messages: number;
        }[]
      >`
        select minute, peak_listeners, listener_seconds, quality, chat_messages
        from analytics_stream_minutes
        where stream_id = ${streamId} and minute >= ${from} and minute < ${to} order by minute`;
      type Row = (typeof rows)[number];
      const buckets = new Map<number, Row[]>();
      for (const row of rows) {
        const t = from.getTime() + Math.floor((row.minute.getTime() - from.getTime()) / stepMs) * stepMs;
        const list: Row[] = buckets.get(t) ?? [];
        list.push(row);
        buckets.set(t, list);
      }
      const points: SeriesPoint[] = [];
      for (let t = from.getTime(); t < to.getTime(); t += stepMs) {
        const list: Row[] = buckets.get(t) ?? [];
        let v = 0;
        switch (name) {
          case 'listeners':
            v = list.reduce((max, row) => Math.max(max, row.peak_listeners), 0);
            break;
          case 'listening_minutes':
            v = list.reduce((sum, row) => sum + row.listener_seconds, 0) / 60;
            break;
          case 'chat_messages':
            v = list.reduce((sum, row) => sum + row.chat_messages, 0);
            break;
          default: {
            const sum = list.reduce((s, row) => s + (row.quality[name]?.sum ?? 0), 0);
            const n = list.reduce((s, row) => s + (row.quality[name]?.n ?? 0), 0);
            v = n === 0 ? 0 : sum / n;
          }
        }
        points.push({ t: new Date(t), v });
      }
      return points;
    },

    async perStream(streamIds) {
      const rows = await sql<{ stream_id: number; peak: number; seconds: number }[]>`
        select stream_id, max(peak_listeners)::int as peak, sum(listener_seconds)::float8 as seconds
        from analytics_stream_minutes where stream_id in ${sql(streamIds)} group by stream_id`;
      return new Map(rows.map((row) => [row.stream_id, { peak: row.peak, minutes: row.seconds / 60 }]));
    },

    async trackOwner(trackId) {
      // Read only: the uploads module owns tracks (and depends on this module, not the reverse).
      const [row] = await sql<{ owner_id: number }[]>`select owner_id from tracks where id = ${trackId}`;
      return row?.owner_id ?? null;
    },

    async chatCount(streamId) {
      const [row] = await sql<{ n: number }[]>`
        select count(*)::int as n from analytics_events where stream_id = ${streamId} and event_type = 'chat.message'`;
      return row?.n ?? 0;
    },

    async trackCounts(trackIds, from, to) {
      const [row] = await sql<{ plays: number; completions: number }[]>`
        select count(*) filter (where event_type = 'player.play')::int as plays,
               count(*) filter (where event_type = 'player.complete')::int as completions
        from analytics_events
        where track_id in ${sql(trackIds)} and event_type in ('player.play', 'player.complete')
          and occurred_at >= ${from} and occurred_at < ${to}`;
      return { plays: row?.plays ?? 0, completions: row?.completions ?? 0 };
    },

    async rollupInput(streamId, hour) {
      const [stream] = await sql<StreamRowDb[]>`
        select id, owner_id, title, status, started_at, ended_at from streams where id = ${streamId}`;
      if (!stream) return null;
      const now = new Date();
      const end = new Date(hour.getTime() + HOUR_MS);
      const rows = await sessions(streamId, hour, end);
      const quality: RollupInput['quality'] = [];
      const byMinute = new Map<number, RollupInput['quality'][number]>();
      for (const metric of QUALITY_METRICS) {
        const edges = [...QUALITY_BUCKETS[metric]];
        const buckets = await sql<{ minute: Date; bucket: number; n: number; sum: number }[]>`
          select date_trunc('minute', occurred_at) as minute, width_bucket(v, ${edges}::float8[]) as bucket,
                 count(*)::int as n, sum(v)::float8 as sum
          from (select occurred_at, ("values"->>${metric})::float8 as v from analytics_events
                where stream_id = ${streamId} and event_type = 'quality.listener'
                  and occurred_at >= ${hour} and occurred_at < ${end}) samples
          where v is not null group by 1, 2`;
        for (const row of buckets) {
          const key = row.minute.getTime();
          let entry = byMinute.get(key);
          if (!entry) {
            entry = { minute: row.minute.toISOString(), quality: {} };
            byMinute.set(key, entry);
            quality.push(entry);
          }
          const slot = entry.quality[metric] ?? {
            sum: 0,
            n: 0,
            histogram: new Array(edges.length + 1).fill(0),
          };
          slot.sum += row.sum;
          slot.n += row.n;
          slot.histogram[row.bucket] = (slot.histogram[row.bucket] ?? 0) + row.n;
          entry.quality[metric] = slot;
        }
      }
      const counts = await sql<
        { minute: Date; chat_messages: number; reports: number; moderator_actions: number }[]
      >`
        select date_trunc('minute', occurred_at) as minute,
               count(*) filter (where event_type = 'chat.message')::int as chat_messages,
               count(*) filter (where event_type = 'chat.report')::int as reports,
               count(*) filter (where event_type = 'chat.moderation')::int as moderator_actions
        from analytics_events
        where stream_id = ${streamId} and event_type in ('chat.message', 'chat.report', 'chat.moderation')
          and occurred_at >= ${hour} and occurred_at < ${end}
        group by 1`;
      return {
        stream_id: streamId,
        hour: hour.toISOString(),
        started_at: stream.started_at.toISOString(),
        ended_at: stream.ended_at?.toISOString() ?? null,
        now: now.toISOString(),
        sessions: rows.map((row) => ({
          session_id: row.session_id,
          listener_key: row.user_id
            ? `u:${row.user_id}`
            : row.anon_id
              ? `a:${row.anon_id}`
              : `s:${row.session_id}`,
          country: row.country ?? 'ZZ',
          joined_at: row.joined_at.toISOString(),
          left_at: row.left_at?.toISOString() ?? null,
        })),
        quality,
        counts: counts.map((row) => ({
          minute: row.minute.toISOString(),
          chat_messages: row.chat_messages,
          reports: row.reports,
          moderator_actions: row.moderator_actions,
        })),
      };
    },

    async writeRollup(output) {
      const hour = new Date(output.hour);
      const end = new Date(hour.getTime() + HOUR_MS);
      const id = output.stream_id;
      // Replaces the hour as a whole: a redelivered or repeated job writes the same rows again.
      await sql.begin(async (tx) => {
        await tx`delete from analytics_stream_minutes where stream_id = ${id} and minute >= ${hour} and minute < ${end}`;
        await tx`
          delete from analytics_stream_minute_countries where stream_id = ${id} and minute >= ${hour} and minute < ${end}`;
        await tx`delete from analytics_stream_hour_listeners where stream_id = ${id} and hour = ${hour}`;
        if (output.minutes.length > 0) {
          await tx`insert into analytics_stream_minutes ${tx(
            output.minutes.map((m) => ({
              stream_id: id,
              minute: new Date(m.minute),
              peak_listeners: m.peak_listeners,
              listener_seconds: m.listener_seconds,
              quality: tx.json(m.quality),
              chat_messages: m.chat_messages,
              reports: m.reports,
              moderator_actions: m.moderator_actions,
            })),
          )}`;
          const countries = output.minutes.flatMap((m) =>
            Object.entries(m.countries).map(([country, seconds]) => ({
              stream_id: id,
              minute: new Date(m.minute),
              country,
              listener_seconds: seconds,
            })),
          );
          if (countries.length > 0) await tx`insert into analytics_stream_minute_countries ${tx(countries)}`;
        }
        if (output.listeners.length > 0) {
          await tx`insert into analytics_stream_hour_listeners ${tx(
            output.listeners.map((l) => ({
              stream_id: id,
              hour,
              listener_key: l.listener_key,
              country: l.country,
              listener_seconds: l.seconds,
            })),
          )}`;
        }
        await tx`
          insert into analytics_rollups (stream_id, hour, final) values (${id}, ${hour}, ${output.final})
          on conflict (stream_id, hour) do update
            set final = excluded.final, rolled_at = now(), runs = analytics_rollups.runs + 1`;
      });
    },

    async finalHours(streamId) {
      const [row] = await sql<{ n: number }[]>`
        select count(*)::int as n from analytics_rollups where stream_id = ${streamId} and final`;
      return row?.n ?? 0;
    },
  };
}
