/**
 * The retention sweep on real PostgreSQL: what each table keeps and loses, bounded batches, one
 * sweeper at a time (advisory lock), the schedule, and tokens of swept sessions through the real
 * gRPC server.
 */
import { createHash, randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { connectDatabase } from '../../common/db/index.js';
import { createLogger, loadConfig, metricsRegistry } from '../../common/index.js';
import {
  PgJobQueue,
  PgSessionStore,
  type SessionRecord,
  UnrecoverableJobError,
} from '../../common/ports/index.js';
import { createTestDatabase, type TestDatabase } from '../../common/testing/index.js';
import {
  authCalls,
  bearer,
  captureLogs,
  grpcError,
  type Harness,
  STRONG_PASSWORD,
  startHarness,
} from '../test-harness.js';
import {
  RETENTION_LOCK_KEY,
  type RetentionTask,
  retentionTasks,
  startRetention,
  startRetentionSweeper,
} from './retention.js';

const log = createLogger({ level: 'silent', name: 'retention-test' });
const DAY_MS = 24 * 3600 * 1000;
const daysAgo = (days: number) => new Date(Date.now() - days * DAY_MS);
const config = loadConfig({ RETENTION_SWEEP_INTERVAL_S: '0' });

/** A promise and its resolver, for holding a sweep at a known point. */
function gate<T = void>() {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

async function metricValue(name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = metricsRegistry().getSingleMetric(name);
  if (!metric) return 0;
  const { values } = await metric.get();
  const found = values.find((value) =>
    Object.entries(labels).every(([key, wanted]) => String(value.labels[key]) === wanted),
  );
  return found?.value ?? 0;
}

describe('retention sweep (PostgreSQL)', () => {
  let db: TestDatabase;
  let sessions: PgSessionStore;
  let jobs: PgJobQueue;
  let userId: number;

  beforeAll(async () => {
    db = await createTestDatabase('embedded');
    sessions = new PgSessionStore(db.sql);
    jobs = new PgJobQueue(db.sql, { pollMs: 250, log });
    const [row] = await db.sql<{ id: number }[]>`
      insert into users (email, email_normalized, username, username_normalized, password_hash, roles)
      values ('r@example.test', 'r@example.test', 'r', 'r', 'x', ${['listener']}) returning id`;
    userId = row!.id;
  });
  afterAll(async () => {
    await jobs.close();
    await db.drop();
  });

  const sweeper = (tasks = retentionTasks({ config, sql: db.sql, sessions, jobs }), batchSize = 1000) =>
    startRetentionSweeper({ sql: db.sql, log, tasks, intervalMs: 0, batchSize });

  async function saveSession(times: { expiresAt: Date; revokedAt?: Date }): Promise<string> {
    const record: SessionRecord = {
      sessionId: randomUUID(),
      userId,
      deviceId: '',
      ipAddress: '',
      createdAt: daysAgo(40),
      lastUsedAt: daysAgo(40),
      expiresAt: times.expiresAt,
      revokedAt: times.revokedAt ?? null,
      revokedReason: times.revokedAt ? 'logout' : null,
    };
    await sessions.save(record);
    return record.sessionId;
  }

  const sessionIds = async () =>
    new Set((await db.sql<{ id: string }[]>`select id from sessions`).map((row) => row.id));

  it('deletes sessions 7 days after their expiry or revocation, and nothing else', async () => {
    const fresh = await saveSession({ expiresAt: daysAgo(-20) });
    const expiredLongAgo = await saveSession({ expiresAt: daysAgo(8) });
    const expiredRecently = await saveSession({ expiresAt: daysAgo(6) });
    const revokedLongAgo = await saveSession({ expiresAt: daysAgo(-20), revokedAt: daysAgo(8) });
    const revokedRecently = await saveSession({ expiresAt: daysAgo(-20), revokedAt: daysAgo(6) });
    const deletedBefore = await metricValue('veza_retention_deleted_rows_total', { table: 'sessions' });

    const run = await sweeper().runOnce();

    expect(run).toMatchObject({ outcome: 'done', deleted: { sessions: 2 } });
    const left = await sessionIds();
    expect(left.has(expiredLongAgo) || left.has(revokedLongAgo)).toBe(false);
    for (const kept of [fresh, expiredRecently, revokedRecently]) expect(left.has(kept)).toBe(true);
    // The survivors are untouched: still readable (the recently revoked one as revoked).
    expect((await sessions.get(revokedRecently))?.revokedReason).toBe('logout');
    expect(await metricValue('veza_retention_deleted_rows_total', { table: 'sessions' })).toBe(
      deletedBefore + 2,
    );
    expect(await metricValue('veza_retention_last_success_timestamp_seconds')).toBeGreaterThan(
      Date.now() / 1000 - 60,
    );
    expect(await metricValue('veza_retention_sweep_duration_seconds')).toBeGreaterThan(0);
  });

  it('deletes refresh tokens dead for 7 days, keeping spent ones of live or recently closed families', async () => {
    const insert = async (label: string, expiresAt: Date, used: boolean, revokedAt: Date | null) => {
      await db.sql`
        insert into refresh_tokens (token_hash, session_id, user_id, issued_at, expires_at, used_at, revoked_at)
        values (${label}, ${randomUUID()}, ${userId}, ${daysAgo(40)}, ${expiresAt},
                ${used ? daysAgo(30) : null}, ${revokedAt})`;
    };
    await insert('live', daysAgo(-20), false, null);
    await insert('spent-live-family', daysAgo(-3), true, null);
    await insert('spent-expired-recently', daysAgo(6), true, null);
    await insert('spent-expired-long-ago', daysAgo(8), true, null);
    await insert('revoked-recently', daysAgo(-20), true, daysAgo(1));
    await insert('revoked-long-ago', daysAgo(-20), false, daysAgo(8));

    const run = await sweeper().runOnce();

    expect(run).toMatchObject({ outcome: 'done', deleted: { refresh_tokens: 2 } });
    const left = (
      await db.sql<{ token_hash: string }[]>`select token_hash from refresh_tokens order by 1`
    ).map((row) => row.token_hash);
    expect(left).toEqual(['live', 'revoked-recently', 'spent-expired-recently', 'spent-live-family']);
  });

  it('deletes finished jobs after 7 days and dead ones (with their dead letters) after 30, never pending ones', async () => {
    for (const id of ['ok-old', 'ok-new']) await jobs.enqueue('retention-work', { id }, { jobId: id });
    for (const id of ['bad-old', 'bad-new']) await jobs.enqueue('retention-work', { id }, { jobId: id });
    const consumer = jobs.consume(
      'retention-work',
      async (payload) => {
        if ((payload as { id: string }).id.startsWith('bad')) throw new UnrecoverableJobError('refused');
      },
      { concurrency: 2, maxDeliveries: 1, backoffMs: [] },
    );
    await vi.waitFor(
      async () => {
        const [row] = await db.sql<{ n: number }[]>`
          select count(*)::int as n from jobs where queue = 'retention-work' and status in ('done', 'dead')`;
        expect(row?.n).toBe(4);
      },
      { timeout: 10_000 },
    );
    await consumer.stop({ drain: true });
    await jobs.enqueue('retention-idle', { id: 'queued-old' }, { jobId: 'queued-old' });
    await jobs.enqueue('retention-idle', { id: 'running-old' }, { jobId: 'running-old' });
    await db.sql`update jobs set status = 'running', locked_until = now() where job_id = 'running-old'`;
    const age = {
      'ok-old': 8,
      'ok-new': 6,
      'bad-old': 31,
      'bad-new': 29,
      'queued-old': 90,
      'running-old': 90,
    };
    for (const [jobId, days] of Object.entries(age)) {
      await db.sql`update jobs set created_at = ${daysAgo(days)}, updated_at = ${daysAgo(days)} where job_id = ${jobId}`;
      await db.sql`update job_dead_letters set failed_at = ${daysAgo(days)} where job_id = ${jobId}`;
    }

    const run = await sweeper().runOnce();

    expect(run).toMatchObject({ outcome: 'done', deleted: { jobs: 2, job_dead_letters: 1 } });
    const left = await db.sql<{ job_id: string }[]>`select job_id from jobs order by job_id`;
    expect(left.map((row) => row.job_id)).toEqual(['bad-new', 'ok-new', 'queued-old', 'running-old']);
    expect((await jobs.deadLetters('retention-work')).map((letter) => letter.jobId)).toEqual(['bad-new']);
    // A swept job's id no longer deduplicates; a kept one still does.
    expect((await jobs.enqueue('retention-idle', {}, { jobId: 'queued-old' })).duplicate).toBe(true);
    expect((await jobs.enqueue('retention-work-2', {}, { jobId: 'ok-old' })).duplicate).toBe(false);
  });

  it('deletes delivered emails after 7 days, failed ones after 30, expired confirmation tokens after 7', async () => {
    const email = async (label: string, state: string, days: number) => {
      await db.sql`
        insert into email_outbox (to_address, subject, body_text, kind, status, created_at)
        values ('x@example.test', ${label}, '', 'test', ${state}, ${daysAgo(days)})`;
    };
    await email('sent-old', 'sent', 8);
    await email('logged-old', 'logged', 8);
    await email('sent-new', 'sent', 6);
    await email('failed-old', 'failed', 31);
    await email('failed-new', 'failed', 29);
    await email('pending-old', 'pending', 90);
    const confirmation = async (label: string, expiresDaysAgo: number, used: boolean) => {
      await db.sql`
        insert into email_confirmations (token_hash, user_id, expires_at, used_at)
        values (${label}, ${userId}, ${daysAgo(expiresDaysAgo)}, ${used ? daysAgo(expiresDaysAgo + 1) : null})`;
    };
    await confirmation('used-old', 8, true);
    await confirmation('unused-old', 8, false);
    await confirmation('used-new', 6, true);
    await confirmation('valid', -2, false);

    const run = await sweeper().runOnce();

    expect(run).toMatchObject({ outcome: 'done', deleted: { email_outbox: 3, email_confirmations: 2 } });
    const outbox = await db.sql<{ subject: string }[]>`select subject from email_outbox order by subject`;
    expect(outbox.map((row) => row.subject)).toEqual(['failed-new', 'pending-old', 'sent-new']);
    const tokens = await db.sql<
      { token_hash: string }[]
    >`select token_hash from email_confirmations order by 1`;
    expect(tokens.map((row) => row.token_hash)).toEqual(['used-new', 'valid']);
  });

  it('deletes in batches of the configured size until the backlog is gone', async () => {
    const doomed = [];
    for (let i = 0; i < 5; i++) doomed.push(await saveSession({ expiresAt: daysAgo(10 + i) }));
    const keep = await saveSession({ expiresAt: daysAgo(-1) });
    const batches: number[] = [];
    const tasks = retentionTasks({ config, sql: db.sql, sessions, jobs }).map(
      (task): RetentionTask =>
        task.table !== 'sessions'
          ? task
          : {
              table: task.table,
              deleteBatch: async (limit) => {
                const deleted = await task.deleteBatch(limit);
                batches.push(deleted);
                return deleted;
              },
            },
    );

    const run = await sweeper(tasks, 2).runOnce();

    expect(batches).toEqual([2, 2, 1]);
    expect(run).toMatchObject({ outcome: 'done', deleted: { sessions: 5 } });
    const left = await sessionIds();
    expect(doomed.some((id) => left.has(id))).toBe(false);
    expect(left.has(keep)).toBe(true);
    // The store's own bound, without the sweeper.
    for (let i = 0; i < 3; i++) await saveSession({ expiresAt: daysAgo(9) });
    expect(await sessions.deleteExpired(7 * DAY_MS, 2)).toBe(2);
    expect(await sessions.deleteExpired(7 * DAY_MS, 2)).toBe(1);
    expect(await sessions.deleteExpired(7 * DAY_MS, 2)).toBe(0);
  });

  it('lets one sweeper run at a time: the others skip while it holds the lock', async () => {
    const entered = gate();
    const release = gate();
    const slow: RetentionTask = {
      table: 'slow',
      deleteBatch: async () => {
        entered.open();
        await release.promise;
        return 0;
      },
    };
    const first = sweeper([slow]);
    const second = sweeper([{ table: 'other', deleteBatch: async () => 0 }]);
    const skippedBefore = await metricValue('veza_retention_sweeps_total', { outcome: 'skipped' });

    const running = first.runOnce();
    await entered.promise;
    expect(await second.runOnce()).toEqual({ outcome: 'skipped' });
    // The same sweeper asked again while it runs skips too.
    expect(await first.runOnce()).toEqual({ outcome: 'skipped' });
    release.open();
    expect(await running).toMatchObject({ outcome: 'done', deleted: { slow: 0 } });
    expect(await metricValue('veza_retention_sweeps_total', { outcome: 'skipped' })).toBe(skippedBefore + 2);

    // Once the lock is free the other sweeps; a lock held by another process (connection) blocks it.
    expect(await second.runOnce()).toMatchObject({ outcome: 'done' });
    const other = connectDatabase(db.url, { max: 1 });
    try {
      const holder = await other.reserve();
      await holder`select pg_advisory_lock(${RETENTION_LOCK_KEY})`;
      expect(await second.runOnce()).toEqual({ outcome: 'skipped' });
      await holder`select pg_advisory_unlock(${RETENTION_LOCK_KEY})`;
      holder.release();
      expect(await second.runOnce()).toMatchObject({ outcome: 'done' });
    } finally {
      await other.end({ timeout: 5 });
    }
  });

  it('keeps sweeping the other tables when one fails, and reports the sweep as failed', async () => {
    const lastSuccessBefore = await metricValue('veza_retention_last_success_timestamp_seconds');
    const run = await sweeper([
      {
        table: 'broken',
        deleteBatch: async () => {
          throw new Error('boom');
        },
      },
      { table: 'fine', deleteBatch: async () => 0 },
    ]).runOnce();
    expect(run).toMatchObject({ outcome: 'failed', deleted: { broken: 0, fine: 0 } });
    expect(await metricValue('veza_retention_last_success_timestamp_seconds')).toBe(lastSuccessBefore);
  });

  it('stops after the current batch when stopped mid-sweep', async () => {
    const entered = gate();
    const release = gate();
    let calls = 0;
    const endless: RetentionTask = {
      table: 'endless',
      deleteBatch: async (limit) => {
        calls += 1;
        entered.open();
        await release.promise;
        return limit;
      },
    };
    const sweeping = sweeper([endless], 10);
    const run = sweeping.runOnce();
    await entered.promise;
    const stopped = sweeping.stop();
    release.open();
    await stopped;
    expect(await run).toMatchObject({ outcome: 'done', deleted: { endless: 10 } });
    expect(calls).toBe(1);
    expect(await sweeping.runOnce()).toEqual({ outcome: 'skipped' });
  });

  it('sweeps on its own, shortly after start and then every interval', async () => {
    const logs = captureLogs();
    let runs = 0;
    const scheduled = startRetentionSweeper({
      sql: db.sql,
      log: logs.log,
      tasks: [
        {
          table: 'counted',
          deleteBatch: async () => {
            runs += 1;
            return 0;
          },
        },
      ],
      intervalMs: 20,
      startDelayMs: 0,
      batchSize: 10,
    });
    try {
      await vi.waitFor(() => expect(runs).toBeGreaterThanOrEqual(2), { timeout: 10_000 });
      const line = await logs.waitForLine((entry) => entry.msg === 'retention sweep finished');
      expect(line).toMatchObject({ component: 'retention', deleted: { counted: 0 }, complete: true });
    } finally {
      await scheduled.stop();
    }
  });
});

describe('tokens of swept sessions (gRPC, standalone ports)', () => {
  let h: Harness;
  let api: ReturnType<typeof authCalls>;
  let seq = 0;

  beforeAll(async () => {
    h = await startHarness();
    api = authCalls(h.auth);
  });
  afterAll(() => h.close());

  async function loggedIn() {
    seq += 1;
    const email = `swept${seq}@example.com`;
    await api.register({ email, username: `swept_${seq}`, password: STRONG_PASSWORD });
    const tokens = await api.authenticate({ email, password: STRONG_PASSWORD });
    const [row] = await h.sql<{ session_id: string }[]>`
      select session_id from refresh_tokens
      where token_hash = ${createHash('sha256').update(tokens.refreshToken).digest('hex')}`;
    return { ...tokens, sessionId: row!.session_id };
  }

  const sweep = () =>
    startRetention({
      config: { ...h.config, RETENTION_SWEEP_INTERVAL_S: 0 },
      sql: h.sql,
      log,
      sessions: h.ports.sessions instanceof PgSessionStore ? h.ports.sessions : null,
      jobs: h.ports.jobs instanceof PgJobQueue ? h.ports.jobs : null,
    }).runOnce();

  it('refuses the tokens of a swept session as unauthenticated', async () => {
    const loggedOut = await loggedIn();
    await api.revokeToken({ token: loggedOut.accessToken });
    const expired = await loggedIn();
    await h.sql`
      update sessions set revoked_at = ${daysAgo(8)} where id = ${loggedOut.sessionId}`;
    await h.sql`
      update refresh_tokens set revoked_at = ${daysAgo(8)} where session_id = ${loggedOut.sessionId}`;
    await h.sql`update sessions set expires_at = ${daysAgo(8)} where id = ${expired.sessionId}`;
    await h.sql`update refresh_tokens set expires_at = ${daysAgo(8)} where session_id = ${expired.sessionId}`;

    expect(await sweep()).toMatchObject({ outcome: 'done', deleted: { sessions: 2, refresh_tokens: 2 } });
    expect(
      await h.sql`select 1 from sessions where id in ${h.sql([loggedOut.sessionId, expired.sessionId])}`,
    ).toHaveLength(0);

    for (const tokens of [loggedOut, expired]) {
      expect(await grpcError(api.validateToken(tokens.accessToken))).toMatchObject({
        code: status.UNAUTHENTICATED,
        details: 'invalid token: unknown session',
      });
      const userId = tokens.userInfo?.userId ?? 0;
      expect((await grpcError(api.getUserInfo(userId, bearer(tokens.accessToken)))).code).toBe(
        status.UNAUTHENTICATED,
      );
      expect(await grpcError(api.refreshToken({ refreshToken: tokens.refreshToken }))).toMatchObject({
        code: status.UNAUTHENTICATED,
        details: 'invalid refresh token',
      });
      expect(
        (await grpcError(api.revokeToken({ token: tokens.refreshToken, tokenTypeHint: 'refresh_token' })))
          .code,
      ).toBe(status.UNAUTHENTICATED);
    }
  });

  it('still recognises the reuse of a spent token of a recently closed session', async () => {
    const first = await loggedIn();
    const second = await api.refreshToken({ refreshToken: first.refreshToken });
    await api.revokeToken({ token: second.accessToken });
    await h.sql`update sessions set revoked_at = ${daysAgo(1)} where id = ${first.sessionId}`;
    await h.sql`update refresh_tokens set revoked_at = ${daysAgo(1)} where session_id = ${first.sessionId}`;

    await sweep();

    expect(await grpcError(api.refreshToken({ refreshToken: first.refreshToken }))).toMatchObject({
      code: status.UNAUTHENTICATED,
      details: 'refresh token reuse detected; session revoked',
    });
    expect(await grpcError(api.validateToken(second.accessToken))).toMatchObject({
      code: status.UNAUTHENTICATED,
      details: 'invalid token: session revoked',
    });
  });
});
