-- Resumable uploads, per-user upload quotas, track visibility and product analytics events.

-- A track is private to its owner (and moderators) unless published; a public track is
-- visible to everyone once ready.
alter table tracks add column is_public boolean not null default false;

-- An upload whose bytes are still arriving (tus PATCHes, gRPC UploadAudioChunks calls).
-- The bytes are staged in a file on the node that received them (node_id); bytes_received
-- is the committed offset: a staging file longer than that (a crash mid-write) is cut back
-- to it before the next append. The row goes when the upload completes, is cancelled or
-- expires; the track row stays (failed, with the reason) when the bytes were refused.
create table upload_sessions (
  track_id bigint primary key references tracks (id) on delete cascade,
  owner_id bigint not null references users (id) on delete cascade,
  protocol text not null check (protocol in ('tus', 'multipart', 'grpc')),
  -- The declared size; null when the client did not say (the end of its stream ends the file).
  upload_length bigint check (upload_length > 0),
  bytes_received bigint not null default 0 check (bytes_received >= 0),
  -- sha256 of the whole file as declared by the client, lowercase hex.
  checksum text check (checksum ~ '^[0-9a-f]{64}$'),
  filename text,
  node_id text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  expires_at timestamptz not null,
  check (upload_length is null or bytes_received <= upload_length)
);
create index upload_sessions_owner on upload_sessions (owner_id);
create index upload_sessions_expires on upload_sessions (expires_at);

-- Per-user overrides of UPLOAD_QUOTA_BYTES (e.g. a bigger quota for a label account).
create table upload_quotas (
  user_id bigint primary key references users (id) on delete cascade,
  quota_bytes bigint not null check (quota_bytes >= 0),
  updated_at timestamptz not null default now()
);

-- AnalyticsService events (the seed's "Track upload event" and the like). user_id is kept
-- without a foreign key: analytics outlive the accounts they mention.
create table analytics_events (
  id bigserial primary key,
  event_type text not null check (event_type ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
  user_id bigint,
  properties jsonb not null default '{}'::jsonb,
  occurred_at timestamptz not null default now(),
  recorded_at timestamptz not null default now()
);
create index analytics_events_type_time on analytics_events (event_type, occurred_at);
create index analytics_events_user_time on analytics_events (user_id, occurred_at) where user_id is not null;
