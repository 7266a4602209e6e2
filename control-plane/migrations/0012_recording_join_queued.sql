-- When the join of an ended stream's recording was handed to the job queue. The job is queued
-- after the transaction that creates the replay track, so a control plane that dies in between
-- (or a queue that refuses it) leaves a stream 'processing' with no job: the replay sweep finds
-- those by this column being empty, and streams whose `stream.ended` was never handled by their
-- recording_status still being 'recording' after the end.
alter table streams add column recording_join_queued_at timestamptz;

-- Streams already past that point had their job queued by the code before this column.
update streams set recording_join_queued_at = ended_at
  where recording_status in ('processing', 'ready', 'no_audio', 'failed', 'deleted');

-- The sweep's two questions, on the few rows that can answer them.
create index streams_recording_unjoined on streams (ended_at)
  where status = 'ended' and record
    and (recording_status = 'recording' or (recording_status = 'processing' and recording_join_queued_at is null));
