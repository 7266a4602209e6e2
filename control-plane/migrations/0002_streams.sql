-- Live streams and the chat room each one gets. The chat issue extends chat_rooms.

create table chat_rooms (
  id bigserial primary key,
  name text not null,
  description text not null default '',
  owner_id bigint not null references users (id) on delete cascade,
  -- Set when the room is the chat of a live stream (the foreign key is added below,
  -- once streams exists, because the two tables point at each other).
  stream_id bigint,
  is_private boolean not null default false,
  created_at timestamptz not null default now()
);

create table streams (
  id bigserial primary key,
  owner_id bigint not null references users (id) on delete cascade,
  title text not null check (char_length(title) between 1 and 120),
  description text not null default '' check (char_length(description) <= 2000),
  genre text not null default '' check (char_length(genre) <= 50),
  status text not null default 'live' check (status in ('live', 'ended')),
  is_public boolean not null default true,
  allow_anonymous boolean not null default false,
  chat_room_id bigint not null references chat_rooms (id),
  -- The media node hosting the stream's routers; null until one is assigned.
  media_node_id text,
  listener_count integer not null default 0 check (listener_count >= 0),
  peak_listeners integer not null default 0 check (peak_listeners >= 0),
  started_at timestamptz not null default now(),
  ended_at timestamptz,
  end_reason text,
  constraint streams_ended_consistent check ((status = 'ended') = (ended_at is not null)),
  -- Anonymous listening only makes sense on a stream anyone can find.
  constraint streams_anonymous_needs_public check (is_public or not allow_anonymous)
);

alter table chat_rooms
  add constraint chat_rooms_stream_id_fkey foreign key (stream_id) references streams (id) on delete set null;
create unique index chat_rooms_one_per_stream on chat_rooms (stream_id) where stream_id is not null;
create index chat_rooms_owner_id on chat_rooms (owner_id);

-- The live directory: newest first, over live rows only.
create index streams_live on streams (started_at desc, id desc) where status = 'live';
-- At most one live stream per broadcaster; StartStream ends the previous one first.
create unique index streams_one_live_per_owner on streams (owner_id) where status = 'live';
create index streams_owner_id on streams (owner_id, started_at desc);
