-- Recordings of live streams and their replays.

-- Whether a stream is recorded (chosen at StartStream; on by default) and where its replay
-- stands: 'off' (not recorded), 'recording' (live), 'processing' (ended; the worker joins and
-- transcodes), 'ready', 'no_audio' (ended without any audio: no replay), 'failed', 'deleted'.
alter table streams add column record boolean not null default true;
alter table streams add column recording_status text not null default 'off'
  check (recording_status in ('off', 'recording', 'processing', 'ready', 'no_audio', 'failed', 'deleted'));

-- A replay is a track linked to the stream it recorded; at most one per stream. Its chat's
-- offsets count from recording_started_at, the wall-clock time of the recording's first sample.
alter table tracks add column stream_id bigint references streams (id) on delete cascade;
alter table tracks add column recording_started_at timestamptz;
create unique index tracks_one_replay_per_stream on tracks (stream_id) where stream_id is not null;
