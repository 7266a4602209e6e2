-- Chat messages and room membership, moderation (sanctions, reports), notifications and follows.

-- The newest delivered message of each room. Updating it takes the room's row lock, which
-- serialises the sends of one room: ids are then handed out in commit order, so a reader that
-- has seen message N and asks for "after N" can never miss a message committed later.
alter table chat_rooms add column last_message_id bigint not null default 0;

create table chat_room_members (
  room_id bigint not null references chat_rooms (id) on delete cascade,
  user_id bigint not null references users (id) on delete cascade,
  joined_at timestamptz not null default now(),
  primary key (room_id, user_id)
);
create index chat_room_members_user_id on chat_room_members (user_id);

create table chat_messages (
  id bigserial primary key,
  room_id bigint not null references chat_rooms (id) on delete cascade,
  user_id bigint not null references users (id) on delete cascade,
  content text not null,
  message_type text not null,
  metadata bytea not null default ''::bytea,
  reply_to_id bigint references chat_messages (id) on delete set null,
  -- Chosen by the sender; a retried send with the same id returns the stored message.
  client_message_id text,
  -- Stored but never delivered nor listed: the automatic moderation refused it.
  flagged boolean not null default false,
  moderation_score real,
  moderation_reasons text[] not null default '{}',
  deleted_at timestamptz,
  deleted_by bigint references users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint chat_messages_client_id_length check (char_length(client_message_id) between 1 and 64)
);
create unique index chat_messages_client_id on chat_messages (room_id, user_id, client_message_id)
  where client_message_id is not null;
-- History and catch-up read a room's visible messages by id.
create index chat_messages_room_visible on chat_messages (room_id, id) where not flagged;
-- Recent messages of one sender in a room (repeat detection).
create index chat_messages_room_user on chat_messages (room_id, user_id, id desc);

-- Sanctions in one room. A mute blocks sending until it expires; a ban blocks joining,
-- reading and sending, until expires_at when set, otherwise until lifted.
create table chat_room_mutes (
  room_id bigint not null references chat_rooms (id) on delete cascade,
  user_id bigint not null references users (id) on delete cascade,
  muted_by bigint references users (id) on delete set null,
  reason text not null default '',
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  primary key (room_id, user_id)
);

create table chat_room_bans (
  room_id bigint not null references chat_rooms (id) on delete cascade,
  user_id bigint not null references users (id) on delete cascade,
  banned_by bigint references users (id) on delete set null,
  reason text not null default '',
  created_at timestamptz not null default now(),
  expires_at timestamptz,
  primary key (room_id, user_id)
);

-- The moderation queue: reports by users, and the messages the automatic moderation flagged
-- (source 'automatic', no reporter).
create table reports (
  id bigserial primary key,
  source text not null check (source in ('user', 'automatic')),
  reporter_id bigint references users (id) on delete set null,
  target_type text not null check (target_type in ('message', 'user', 'stream')),
  target_id bigint not null,
  room_id bigint references chat_rooms (id) on delete set null,
  reason text not null,
  details text not null default '',
  score real,
  reasons text[] not null default '{}',
  status text not null default 'open' check (status in ('open', 'dismissed', 'actioned', 'approved')),
  resolved_by bigint references users (id) on delete set null,
  resolved_at timestamptz,
  resolution_note text not null default '',
  created_at timestamptz not null default now(),
  constraint reports_resolved_consistent check ((status = 'open') = (resolved_at is null))
);
-- A user reporting the same thing twice while it is open gets the first report back.
create unique index reports_one_open_per_reporter on reports (reporter_id, target_type, target_id)
  where status = 'open' and reporter_id is not null;
create index reports_status on reports (status, id desc);

create table notifications (
  id bigserial primary key,
  user_id bigint not null references users (id) on delete cascade,
  notification_type text not null,
  title text not null,
  body text not null default '',
  -- UTF-8 JSON the producer attached (the proto's bytes field), or null.
  data jsonb,
  -- Makes a producer's retry (or the same event seen by several control-plane processes)
  -- create one notification, e.g. 'stream.live:42'.
  dedupe_key text,
  read_at timestamptz,
  created_at timestamptz not null default now()
);
create index notifications_user on notifications (user_id, id desc);
create index notifications_user_unread on notifications (user_id) where read_at is null;
create unique index notifications_dedupe on notifications (user_id, dedupe_key) where dedupe_key is not null;

create table follows (
  follower_id bigint not null references users (id) on delete cascade,
  broadcaster_id bigint not null references users (id) on delete cascade,
  created_at timestamptz not null default now(),
  primary key (follower_id, broadcaster_id),
  constraint follows_not_self check (follower_id <> broadcaster_id)
);
create index follows_broadcaster on follows (broadcaster_id);
