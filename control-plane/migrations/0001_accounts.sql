-- Accounts, login sessions, refresh tokens, signing keys, email outbox and the audit log.

create table users (
  id bigserial primary key,
  email text not null,
  email_normalized text not null unique,
  username text not null,
  username_normalized text not null unique,
  password_hash text not null,
  first_name text not null default '',
  last_name text not null default '',
  display_name text not null default '',
  bio text not null default '',
  avatar_key text,
  roles text[] not null,
  email_confirmed_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint users_roles_known check (roles <@ array['listener', 'broadcaster', 'moderator', 'admin']::text[])
);

-- One row per login session (a refresh-token family). The standalone SessionStore
-- keeps its state here; in cluster mode Redis holds it and this table stays empty.
create table sessions (
  id uuid primary key,
  user_id bigint not null references users (id) on delete cascade,
  device_id text not null default '',
  ip_address text not null default '',
  created_at timestamptz not null default now(),
  last_used_at timestamptz not null default now(),
  expires_at timestamptz not null,
  revoked_at timestamptz,
  revoked_reason text
);
create index sessions_user_id on sessions (user_id);

-- Refresh tokens are stored as SHA-256 hashes. Each use rotates to a new token; a
-- second use of a token (used_at already set) means it leaked, and revokes the family.
create table refresh_tokens (
  token_hash text primary key,
  session_id uuid not null,
  user_id bigint not null references users (id) on delete cascade,
  issued_at timestamptz not null default now(),
  expires_at timestamptz not null,
  used_at timestamptz,
  revoked_at timestamptz
);
create index refresh_tokens_session_id on refresh_tokens (session_id);

create table email_confirmations (
  token_hash text primary key,
  user_id bigint not null references users (id) on delete cascade,
  expires_at timestamptz not null,
  used_at timestamptz
);

create table email_outbox (
  id bigserial primary key,
  to_address text not null,
  subject text not null,
  body_text text not null,
  kind text not null,
  status text not null default 'pending' check (status in ('pending', 'sent', 'logged', 'failed')),
  attempts integer not null default 0,
  last_error text,
  created_at timestamptz not null default now(),
  sent_at timestamptz
);
create index email_outbox_pending on email_outbox (id) where status = 'pending';

-- Asymmetric JWT signing keys. The newest unretired key signs; every unretired key verifies.
create table signing_keys (
  kid text primary key,
  algorithm text not null,
  private_jwk jsonb not null,
  public_jwk jsonb not null,
  created_at timestamptz not null default now(),
  retired_at timestamptz
);

create table audit_log (
  id bigserial primary key,
  actor_id bigint,
  action text not null,
  target_type text not null,
  target_id text not null,
  details jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now()
);
create index audit_log_target on audit_log (target_type, target_id);
