-- ListStreams pages through the live streams by id (newest first, then those started since),
-- so the live directory's index is by id; the one by start time served the old order only.
drop index if exists streams_live;
create index streams_live on streams (id) where status = 'live';
