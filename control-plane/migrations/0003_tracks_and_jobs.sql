-- Uploaded tracks and the standalone job queue (its dead letters too).

-- One row per uploaded track. The upload path inserts it ('uploaded', source_*), the
-- transcode worker fills in the rest ('processing' with progress, then 'ready' or 'failed'
-- with failure_reason). Outputs live in BlobStorage under tracks/<id>/<output_version>/.
create table tracks (
  id bigserial primary key,
  owner_id bigint not null references users (id) on delete cascade,
  title text not null,
  description text not null default '',
  genre text not null default '',
  status text not null default 'uploaded' check (status in ('uploaded', 'processing', 'ready', 'failed')),
  progress smallint not null default 0 check (progress between 0 and 100),
  failure_reason text,
  source_key text,
  -- sha256 of the uploaded bytes, lowercase hex.
  source_checksum text check (source_checksum ~ '^[0-9a-f]{64}$'),
  source_size bigint check (source_size >= 0),
  -- The container ffprobe found (wav, mp3, flac, ogg, ...), or what the uploader declared before that.
  file_format text,
  duration_s double precision,
  codec text,
  bitrate integer,
  sample_rate integer,
  channels smallint,
  -- Integrated loudness of the source (LUFS) measured by the first loudnorm pass.
  input_lufs double precision,
  -- [{format, codec, bitrate, key, url}], one per rendition (opus, aac, hls).
  renditions jsonb not null default '[]'::jsonb,
  waveform_key text,
  cover_key text,
  -- The folder of the published outputs; derived from the source bytes, so a retried job
  -- overwrites its own earlier attempt instead of leaving a second copy.
  output_version text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index tracks_owner on tracks (owner_id, created_at desc);

-- The standalone JobQueue (common/ports/pg-job-queue.ts). Rows stay after completion so a
-- job id stays deduplicated; 'running' rows whose lease (locked_until) passed belong to a
-- consumer that died and are taken again.
create table jobs (
  id bigserial primary key,
  queue text not null,
  job_id text not null,
  payload jsonb not null,
  status text not null default 'queued' check (status in ('queued', 'running', 'done', 'dead')),
  attempts integer not null default 0,
  available_at timestamptz not null default now(),
  locked_until timestamptz,
  -- Changes on every delivery, so a consumer whose lease was lost cannot settle the job.
  lock_token uuid,
  last_error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (queue, job_id)
);
create index jobs_due on jobs (queue, available_at) where status = 'queued';
create index jobs_leased on jobs (queue, locked_until) where status = 'running';

create table job_dead_letters (
  id bigserial primary key,
  queue text not null,
  job_id text not null,
  payload jsonb not null,
  reason text not null,
  attempts integer not null,
  failed_at timestamptz not null default now()
);
create index job_dead_letters_queue on job_dead_letters (queue, id);
