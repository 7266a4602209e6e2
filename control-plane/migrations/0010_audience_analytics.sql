-- Audience analytics (issue 13): the raw events gain what a listener or broadcaster session
-- needs (its stream, session, anonymous id, country and numbers: never an IP address), and the
-- worker's per-stream, per-minute roll-ups, kept for good while the raw events expire
-- (ANALYTICS_RAW_RETENTION_DAYS).

alter table analytics_events
  add column stream_id bigint,
  add column track_id bigint,
  add column session_id text,
  add column anon_id text,
  add column country text check (country ~ '^[A-Z]{2}$'),
  add column "values" jsonb not null default '{}'::jsonb,
  add column dedupe_key text;

-- Every control plane hears the bus: an event with a key is stored once, whoever stores it first.
create unique index analytics_events_dedupe on analytics_events (dedupe_key) where dedupe_key is not null;

-- Live figures and roll-ups read one stream's events of one type over a time range.
create index analytics_events_stream_type_time on analytics_events (stream_id, event_type, occurred_at)
  where stream_id is not null;
create index analytics_events_track_type on analytics_events (track_id, event_type) where track_id is not null;
-- The retention sweep deletes the oldest first.
create index analytics_events_occurred_at on analytics_events (occurred_at);

-- One row per stream per minute. Quality histograms follow QUALITY_BUCKETS
-- (common/contracts/analytics-events.ts) with one overflow bucket.
create table analytics_stream_minutes (
  stream_id bigint not null,
  minute timestamptz not null,
  peak_listeners integer not null check (peak_listeners >= 0),
  listener_seconds double precision not null check (listener_seconds >= 0),
  quality jsonb not null default '{}'::jsonb,
  chat_messages integer not null default 0,
  reports integer not null default 0,
  moderator_actions integer not null default 0,
  primary key (stream_id, minute)
);

create table analytics_stream_minute_countries (
  stream_id bigint not null,
  minute timestamptz not null,
  country text not null,
  listener_seconds double precision not null check (listener_seconds >= 0),
  primary key (stream_id, minute, country)
);

-- Who listened in each hour, so unique listeners over any range of hours need no raw events.
create table analytics_stream_hour_listeners (
  stream_id bigint not null,
  hour timestamptz not null,
  listener_key text not null,
  country text not null,
  listener_seconds double precision not null check (listener_seconds >= 0),
  primary key (stream_id, hour, listener_key)
);

-- Which hours of a stream were rolled up, and whether after the stream ended.
create table analytics_rollups (
  stream_id bigint not null,
  hour timestamptz not null,
  final boolean not null,
  rolled_at timestamptz not null default now(),
  runs integer not null default 1,
  primary key (stream_id, hour)
);
