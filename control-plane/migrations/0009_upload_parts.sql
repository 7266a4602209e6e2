-- Unfinished uploads are staged where every control plane reaches them: each request's bytes
-- are one blob in BlobStorage (a "part"), recorded here, so the next request of an upload can
-- reach any control plane behind the edge's balancer. No foreign key: a part's blob must be
-- deleted before its row, so rows outlive their session until the sweeper has done that.
create table upload_parts (
  part_key text primary key,
  track_id bigint not null,
  start_offset bigint not null check (start_offset >= 0),
  -- null while its request is still writing it; set in the transaction that commits the offset.
  length bigint check (length > 0),
  created_at timestamptz not null default now()
);
create index upload_parts_track on upload_parts (track_id, start_offset);

-- One control plane at a time finishes an upload (hashes the parts and stores the source):
-- it holds this lease while it does; an expired lease lets the sweeper finish it again.
alter table upload_sessions add column finishing_until timestamptz;
