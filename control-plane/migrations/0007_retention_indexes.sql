-- Indexes for the retention sweep (control-plane/maintenance/retention.ts), so each of its
-- bounded deletes finds its rows through an index instead of scanning the whole table.

-- A session or refresh token is dead from its expiry or its revocation, whichever came first.
create index sessions_dead_since on sessions ((least(expires_at, revoked_at)));
create index refresh_tokens_dead_since on refresh_tokens ((least(expires_at, revoked_at)));

create index email_confirmations_expires on email_confirmations (expires_at);
create index email_outbox_settled on email_outbox (created_at) where status <> 'pending';

create index jobs_finished on jobs (updated_at) where status in ('done', 'dead');
create index job_dead_letters_failed_at on job_dead_letters (failed_at);
