/**
 * The retention sweep: deletes rows that have outlived their use (spent sessions and refresh
 * tokens, finished jobs, delivered emails, expired confirmation tokens). Audit and moderation
 * history is a record and is never swept.
 *
 * Each table's owner deletes its own rows (the SQL stays next to the table's other SQL); this
 * module only schedules, bounds and counts. A sweep runs shortly after start and then every
 * interval, both with jitter, so control planes started together do not sweep together. Every
 * delete takes at most `batchSize` rows (short statements, short row locks, whatever the
 * backlog). With several control planes one sweeps at a time: a sweep holds a transaction-level
 * advisory lock, taken with try-lock, and the others skip their turn. The lock lives as long as
 * that transaction (one pooled connection, idle while the batches run on the others), so a
 * process that dies mid-sweep releases it with its connection.
 */

import type { Sql } from '../../common/db/index.js';
import { type Config, counter, gauge, type Logger } from '../../common/index.js';
import { deleteExpiredAnalyticsEvents } from '../analytics/index.js';
import { deleteDeadRefreshTokens, deleteExpiredConfirmations, deleteSettledEmails } from '../auth/index.js';

/** Arbitrary constant shared by every Veza process (next to the migration and signing-key locks). */
export const RETENTION_LOCK_KEY = 7_360_434;

const DAY_MS = 24 * 3600 * 1000;

const deletedRows = counter('veza_retention_deleted_rows_total', 'Rows deleted by the retention sweep', [
  'table',
]);
const sweeps = counter(
  'veza_retention_sweeps_total',
  'Retention sweeps by outcome: done, failed (a table could not be swept), skipped (another sweep held the lock)',
  ['outcome'],
);
const sweepSeconds = gauge('veza_retention_sweep_duration_seconds', 'Duration of the last retention sweep');
const lastSuccess = gauge(
  'veza_retention_last_success_timestamp_seconds',
  'When the last retention sweep that swept every table finished (unix time)',
);

/** One table's share of the sweep. */
export interface RetentionTask {
  /** The table, as the metrics and logs name it. */
  table: string;
  /** Deletes at most `limit` rows past their retention; returns how many it deleted. */
  deleteBatch(limit: number): Promise<number>;
}

export type RetentionRun =
  | { outcome: 'done' | 'failed'; deleted: Record<string, number>; durationMs: number }
  /** Another sweep (in this process or another) held the lock. */
  | { outcome: 'skipped' };

export interface RetentionSweeper {
  /** One sweep now (or skipped when one is running anywhere). */
  runOnce(): Promise<RetentionRun>;
  /** Stops the timer; a sweep in progress stops after its current batch. */
  stop(): Promise<void>;
}

export interface RetentionSweeperOptions {
  /** Needs room for two connections: the lock's and the deletes'. */
  sql: Sql;
  log: Logger;
  tasks: RetentionTask[];
  /** Between two sweeps (minus up to 10 % jitter); 0: no timer, runOnce() only. */
  intervalMs: number;
  /** The first sweep comes after between half of this and this. */
  startDelayMs?: number;
  batchSize: number;
}

export function startRetentionSweeper(options: RetentionSweeperOptions): RetentionSweeper {
  const { sql, tasks, intervalMs, batchSize } = options;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batch size ${batchSize}`);
  const log = options.log.child({ component: 'retention' });
  let stopped = false;
  let running: Promise<RetentionRun> | null = null;
  let timer: NodeJS.Timeout | undefined;

  async function sweepTables(): Promise<RetentionRun> {
    const started = performance.now();
    const deleted: Record<string, number> = {};
    let complete = true;
    let failed = false;
    for (const task of tasks) {
      let count = 0;
      try {
        for (;;) {
          if (stopped) {
            complete = false;
            break;
          }
          const batch = await task.deleteBatch(batchSize);
          count += batch;
          deletedRows.inc({ table: task.table }, batch);
          if (batch < batchSize) break;
        }
      } catch (error) {
        failed = true;
        log.error({ err: error, table: task.table }, 'retention sweep of a table failed');
      }
      deleted[task.table] = (deleted[task.table] ?? 0) + count;
    }
    const durationMs = performance.now() - started;
    sweepSeconds.set(durationMs / 1000);
    if (complete && !failed) lastSuccess.set(Date.now() / 1000);
    const outcome = failed ? 'failed' : 'done';
    sweeps.inc({ outcome });
    log.info({ deleted, durationMs: Math.round(durationMs), complete }, 'retention sweep finished');
    return { outcome, deleted, durationMs };
  }

  async function sweep(): Promise<RetentionRun> {
    const result: { run: RetentionRun | null } = { run: null };
    try {
      await sql.begin(async (tx) => {
        const [row] = await tx<{ locked: boolean }[]>`
          select pg_try_advisory_xact_lock(${RETENTION_LOCK_KEY}) as locked`;
        if (row?.locked) result.run = await sweepTables();
      });
    } catch (error) {
      // The deletes committed on their own; only the lock's transaction failed (database away).
      if (result.run) return result.run;
      log.error({ err: error }, 'retention sweep failed');
      sweeps.inc({ outcome: 'failed' });
      return { outcome: 'failed', deleted: {}, durationMs: 0 };
    }
    if (result.run) return result.run;
    sweeps.inc({ outcome: 'skipped' });
    log.debug('retention sweep skipped: another control plane is sweeping');
    return { outcome: 'skipped' };
  }

  function runOnce(): Promise<RetentionRun> {
    if (stopped || running) {
      sweeps.inc({ outcome: 'skipped' });
      return Promise.resolve({ outcome: 'skipped' });
    }
    const run = sweep().finally(() => {
      running = null;
    });
    running = run;
    return run;
  }

  const schedule = (delayMs: number) => {
    if (stopped) return;
    timer = setTimeout(() => {
      void runOnce().finally(() => schedule(intervalMs * (1 - 0.1 * Math.random())));
    }, delayMs);
    timer.unref();
  };
  if (intervalMs > 0) {
    const startDelayMs = Math.min(options.startDelayMs ?? 60_000, intervalMs);
    schedule(startDelayMs * (1 - 0.5 * Math.random()));
  }

  return {
    runOnce,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      if (running) await running;
    },
  };
}

/** The tables of stores that live outside PostgreSQL in cluster mode, when they are in it. */
export interface SweepableSessions {
  deleteExpired(retainMs: number, limit: number): Promise<number>;
}

export interface SweepableJobs {
  deleteFinished(retain: { doneMs: number; deadMs: number }, limit: number): Promise<number>;
  deleteDeadLetters(retainMs: number, limit: number): Promise<number>;
}

export type RetentionConfig = Pick<
  Config,
  | 'RETENTION_SWEEP_INTERVAL_S'
  | 'RETENTION_BATCH_SIZE'
  | 'SESSION_RETENTION_DAYS'
  | 'JOB_RETENTION_DAYS'
  | 'DEAD_JOB_RETENTION_DAYS'
  | 'EMAIL_RETENTION_DAYS'
  | 'ANALYTICS_RAW_RETENTION_DAYS'
>;

export interface RetentionDeps {
  config: RetentionConfig;
  sql: Sql;
  /** The standalone SessionStore (its `sessions` table); Redis expires cluster sessions by itself. */
  sessions?: SweepableSessions | null;
  /** The standalone JobQueue (`jobs`, `job_dead_letters`); JetStream removes acked jobs by itself. */
  jobs?: SweepableJobs | null;
}

/** What the control plane sweeps, with the retention periods of the config. */
export function retentionTasks(deps: RetentionDeps): RetentionTask[] {
  const { config, sql, sessions, jobs } = deps;
  const sessionMs = config.SESSION_RETENTION_DAYS * DAY_MS;
  const deadMs = config.DEAD_JOB_RETENTION_DAYS * DAY_MS;
  const emailMs = config.EMAIL_RETENTION_DAYS * DAY_MS;
  const tasks: RetentionTask[] = [];
  if (sessions) {
    tasks.push({ table: 'sessions', deleteBatch: (limit) => sessions.deleteExpired(sessionMs, limit) });
  }
  tasks.push(
    { table: 'refresh_tokens', deleteBatch: (limit) => deleteDeadRefreshTokens(sql, sessionMs, limit) },
    { table: 'email_confirmations', deleteBatch: (limit) => deleteExpiredConfirmations(sql, emailMs, limit) },
    {
      table: 'email_outbox',
      deleteBatch: (limit) => deleteSettledEmails(sql, { deliveredMs: emailMs, failedMs: deadMs }, limit),
    },
    {
      table: 'analytics_events',
      deleteBatch: (limit) =>
        deleteExpiredAnalyticsEvents(sql, config.ANALYTICS_RAW_RETENTION_DAYS * DAY_MS, limit),
    },
  );
  if (jobs) {
    const doneMs = config.JOB_RETENTION_DAYS * DAY_MS;
    tasks.push(
      { table: 'jobs', deleteBatch: (limit) => jobs.deleteFinished({ doneMs, deadMs }, limit) },
      { table: 'job_dead_letters', deleteBatch: (limit) => jobs.deleteDeadLetters(deadMs, limit) },
    );
  }
  return tasks;
}

/** The control plane's sweeper over `retentionTasks`, on the config's schedule. */
export function startRetention(
  deps: RetentionDeps & { log: Logger; startDelayMs?: number },
): RetentionSweeper {
  return startRetentionSweeper({
    sql: deps.sql,
    log: deps.log,
    tasks: retentionTasks(deps),
    intervalMs: deps.config.RETENTION_SWEEP_INTERVAL_S * 1000,
    batchSize: deps.config.RETENTION_BATCH_SIZE,
    ...(deps.startDelayMs === undefined ? {} : { startDelayMs: deps.startDelayMs }),
  });
}
