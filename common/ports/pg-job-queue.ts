/**
 * Standalone JobQueue: the `jobs` table, so queued jobs survive a restart.
 *
 * A delivery claims a row with FOR UPDATE SKIP LOCKED (consumers never wait on each other),
 * stamps it with a fresh lock token and a lease, and renews the lease while the handler runs.
 * Settling checks the token, so a consumer whose lease expired cannot ack a job that another
 * consumer has taken since. Idle consumers sleep until a NOTIFY on `veza_jobs`, the next due
 * time (backoff, lease expiry), or `pollMs`, whichever comes first. All times are the
 * database's clock, so processes with skewed clocks agree on leases.
 */
import { randomUUID } from 'node:crypto';
import type { Sql } from '../db/index.js';
import { createLogger, type Logger } from '../log.js';
import { encodePayload } from './bus-wire.js';
import { abortablePause, ConsumerLoop, type Delivery, type DeliverySource } from './job-consumer.js';
import {
  type ConsumeOptions,
  type DeadLetter,
  type EnqueueOptions,
  type EnqueueResult,
  type JobConsumer,
  type JobHandler,
  type JobQueue,
  parseConsumeOptions,
  parseJobId,
  parseQueueName,
  type QueueStats,
} from './job-queue.js';

const CHANNEL = 'veza_jobs';

type JsonValue = Parameters<Sql['json']>[0];

/** The same JSON round trip as the bus (Dates become strings, undefined fields vanish). */
function toJson(payload: unknown): JsonValue {
  return JSON.parse(encodePayload(payload)) as JsonValue;
}

export interface PgJobQueueOptions {
  /** How long a delivery stays owned without renewal; a dead consumer's jobs come back after it. */
  leaseMs?: number;
  /** The longest an idle consumer sleeps without a notification. */
  pollMs?: number;
  log?: Logger;
}

interface ClaimedRow {
  id: number;
  job_id: string;
  payload: unknown;
  attempts: number;
  lock_token: string;
  last_error: string | null;
}

interface DeadLetterRow {
  queue: string;
  job_id: string;
  payload: unknown;
  reason: string;
  attempts: number;
  failed_at: Date;
}

export class PgJobQueue implements JobQueue {
  readonly leaseMs: number;
  readonly pollMs: number;
  private readonly log: Logger;
  private readonly consumers = new Set<ConsumerLoop>();
  /** Bumped on every notification for a queue, so a consumer can tell it missed none while querying. */
  private readonly generations = new Map<string, number>();
  private readonly waiters = new Map<string, Set<() => void>>();
  private listening: Promise<{ unlisten(): Promise<void> }> | null = null;
  private closed = false;

  constructor(
    private readonly sql: Sql,
    options: PgJobQueueOptions = {},
  ) {
    this.leaseMs = options.leaseMs ?? 30_000;
    this.pollMs = options.pollMs ?? 1_000;
    this.log = options.log ?? createLogger({ name: 'job-queue' });
  }

  async enqueue(queue: string, payload: unknown, options: EnqueueOptions = {}): Promise<EnqueueResult> {
    this.assertOpen();
    const name = parseQueueName(queue);
    const jobId = options.jobId === undefined ? randomUUID() : parseJobId(options.jobId);
    const rows = await this.sql`
      with inserted as (
        insert into jobs (queue, job_id, payload)
        values (${name}, ${jobId}, ${this.sql.json(toJson(payload))})
        on conflict (queue, job_id) do nothing
        returning id
      )
      select id, pg_notify(${CHANNEL}, ${name}) from inserted`;
    return { jobId, duplicate: rows.length === 0 };
  }

  consume(queue: string, handler: JobHandler, options: ConsumeOptions): JobConsumer {
    this.assertOpen();
    const name = parseQueueName(queue);
    const loop = new ConsumerLoop(
      new PgDeliverySource(this, name),
      handler,
      parseConsumeOptions(options),
      this.log,
    );
    this.consumers.add(loop);
    return {
      stop: async (stopOptions) => {
        await loop.stop(stopOptions);
        this.consumers.delete(loop);
      },
    };
  }

  async deadLetters(queue: string): Promise<DeadLetter[]> {
    const name = parseQueueName(queue);
    const rows = await this.sql<DeadLetterRow[]>`
      select queue, job_id, payload, reason, attempts, failed_at
      from job_dead_letters where queue = ${name} order by id`;
    return rows.map((row) => ({
      queue: row.queue,
      jobId: row.job_id,
      payload: row.payload,
      reason: row.reason,
      attempts: row.attempts,
      failedAt: row.failed_at,
    }));
  }

  async stats(queue: string): Promise<QueueStats> {
    const name = parseQueueName(queue);
    const [row] = await this.sql<Array<{ depth: number; oldest: number | null; dead: number }>>`
      select
        (select count(*)::int from jobs where queue = ${name} and status in ('queued', 'running')) as depth,
        (select extract(epoch from now() - min(created_at))::float8 from jobs
          where queue = ${name} and status in ('queued', 'running')) as oldest,
        (select count(*)::int from job_dead_letters where queue = ${name}) as dead`;
    return {
      depth: row?.depth ?? 0,
      oldestAgeSeconds: Math.max(0, row?.oldest ?? 0),
      deadLetters: row?.dead ?? 0,
    };
  }

  /**
   * The retention sweep: deletes at most `limit` jobs finished (acked) more than `retain.doneMs`
   * ago or dead for more than `retain.deadMs`, and returns how many. Queued and running jobs stay.
   */
  async deleteFinished(retain: { doneMs: number; deadMs: number }, limit: number): Promise<number> {
    const done = this.sql`now() - ${retain.doneMs}::double precision * interval '1 millisecond'`;
    const dead = this.sql`now() - ${retain.deadMs}::double precision * interval '1 millisecond'`;
    // The first bound on updated_at lets the jobs_finished index narrow the scan.
    const result = await this.sql`
      delete from jobs where id in (
        select id from jobs
        where status in ('done', 'dead')
          and updated_at < greatest(${done}, ${dead})
          and updated_at < case when status = 'done' then ${done} else ${dead} end
        limit ${limit}
        for update skip locked)`;
    return result.count;
  }

  /** The retention sweep: deletes at most `limit` dead letters older than `retainMs`; returns how many. */
  async deleteDeadLetters(retainMs: number, limit: number): Promise<number> {
    const result = await this.sql`
      delete from job_dead_letters where id in (
        select id from job_dead_letters
        where failed_at < now() - ${retainMs}::double precision * interval '1 millisecond'
        limit ${limit}
        for update skip locked)`;
    return result.count;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.consumers].map((loop) => loop.stop({ drain: false })));
    this.consumers.clear();
    for (const wakers of this.waiters.values()) for (const wake of wakers) wake();
    const listening = this.listening;
    this.listening = null;
    if (listening) await (await listening).unlisten();
  }

  /** @internal Used by the delivery source. */
  async claim(queue: string): Promise<PgDelivery | null> {
    const rows = await this.sql<ClaimedRow[]>`
      with picked as (
        select id from jobs
        where queue = ${queue}
          and ((status = 'queued' and available_at <= now()) or (status = 'running' and locked_until <= now()))
        order by available_at, id
        limit 1
        for update skip locked
      )
      update jobs set
        status = 'running',
        attempts = jobs.attempts + 1,
        lock_token = gen_random_uuid(),
        locked_until = now() + ${this.leaseMs}::double precision * interval '1 millisecond',
        updated_at = now()
      from picked
      where jobs.id = picked.id
      returning jobs.id, jobs.job_id, jobs.payload, jobs.attempts, jobs.lock_token, jobs.last_error`;
    const row = rows[0];
    return row ? new PgDelivery(this.sql, queue, row, this.leaseMs) : null;
  }

  /** @internal Milliseconds until a job of the queue becomes due (null: none is waiting). */
  async msUntilDue(queue: string): Promise<number | null> {
    const rows = await this.sql<{ ms: number | null }[]>`
      select extract(epoch from (least(
        (select min(available_at) from jobs where queue = ${queue} and status = 'queued'),
        (select min(locked_until) from jobs where queue = ${queue} and status = 'running')
      ) - now()))::double precision * 1000 as ms`;
    const ms = rows[0]?.ms;
    return ms === null || ms === undefined ? null : Math.max(0, ms);
  }

  /** @internal */
  async listen(): Promise<void> {
    if (!this.listening) {
      const listening = this.sql.listen(CHANNEL, (queue) => {
        this.generations.set(queue, this.generation(queue) + 1);
        for (const wake of this.waiters.get(queue) ?? []) wake();
      });
      // A failed LISTEN (database briefly away) must not stick: the next call tries again.
      listening.catch(() => {
        if (this.listening === listening) this.listening = null;
      });
      this.listening = listening;
    }
    await this.listening;
  }

  /** @internal */
  generation(queue: string): number {
    return this.generations.get(queue) ?? 0;
  }

  /** @internal Sleeps until a notification for the queue after `seen`, `ms` or the signal. */
  async waitForWork(queue: string, seen: number, ms: number, signal: AbortSignal): Promise<void> {
    if (this.generation(queue) !== seen || this.closed) return;
    const wakers = this.waiters.get(queue) ?? new Set<() => void>();
    this.waiters.set(queue, wakers);
    const woken = new AbortController();
    const wake = () => woken.abort();
    const onAbort = () => woken.abort();
    wakers.add(wake);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await abortablePause(ms, woken.signal);
    } finally {
      wakers.delete(wake);
      signal.removeEventListener('abort', onAbort);
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('job queue closed');
  }
}

class PgDeliverySource implements DeliverySource {
  readonly renewEveryMs: number;

  constructor(
    private readonly queue: PgJobQueue,
    private readonly name: string,
  ) {
    this.renewEveryMs = Math.max(50, Math.floor(queue.leaseMs / 3));
  }

  async next(signal: AbortSignal): Promise<Delivery | null> {
    await this.queue.listen();
    while (!signal.aborted) {
      const seen = this.queue.generation(this.name);
      const delivery = await this.queue.claim(this.name);
      if (delivery) return delivery;
      const due = await this.queue.msUntilDue(this.name);
      // A few ms past the due time, so the claim that follows finds the job due.
      const sleep = due === null ? this.queue.pollMs : Math.min(this.queue.pollMs, Math.ceil(due) + 5);
      await this.queue.waitForWork(this.name, seen, sleep, signal);
    }
    return null;
  }
}

class PgDelivery implements Delivery {
  readonly jobId: string;
  readonly payload: unknown;
  readonly attempt: number;
  readonly lastError: string | null;
  private readonly id: number;
  private readonly token: string;

  constructor(
    private readonly sql: Sql,
    private readonly queue: string,
    row: ClaimedRow,
    private readonly leaseMs: number,
  ) {
    this.id = row.id;
    this.jobId = row.job_id;
    this.payload = row.payload;
    this.attempt = row.attempts;
    this.lastError = row.last_error;
    this.token = row.lock_token;
  }

  async ack(): Promise<void> {
    const rows = await this.sql`
      update jobs set status = 'done', lock_token = null, locked_until = null, updated_at = now()
      where id = ${this.id} and lock_token = ${this.token}
      returning id`;
    this.assertOwned(rows.length);
  }

  async retry(delayMs: number, reason: string): Promise<void> {
    await this.requeue(delayMs, reason);
  }

  async release(): Promise<void> {
    await this.requeue(0, null);
  }

  async deadLetter(reason: string): Promise<void> {
    const rows = await this.sql`
      with dead as (
        update jobs set status = 'dead', last_error = ${reason}, lock_token = null, locked_until = null,
          updated_at = now()
        where id = ${this.id} and lock_token = ${this.token}
        returning queue, job_id, payload, attempts
      )
      insert into job_dead_letters (queue, job_id, payload, reason, attempts)
      select queue, job_id, payload, ${reason}, attempts from dead
      returning id`;
    this.assertOwned(rows.length);
  }

  async renew(): Promise<boolean> {
    const rows = await this.sql`
      update jobs set locked_until = now() + ${this.leaseMs}::double precision * interval '1 millisecond'
      where id = ${this.id} and lock_token = ${this.token}
      returning id`;
    return rows.length > 0;
  }

  /** Settling a job whose lease passed to another consumer changes nothing; say so in the log. */
  private assertOwned(rowCount: number): void {
    if (rowCount === 0)
      throw new Error(`job ${this.jobId}: lease lost before it was settled; another delivery owns it`);
  }

  private async requeue(delayMs: number, reason: string | null): Promise<void> {
    const rows = await this.sql`
      update jobs set
        status = 'queued',
        available_at = now() + ${delayMs}::double precision * interval '1 millisecond',
        last_error = coalesce(${reason}, last_error),
        lock_token = null,
        locked_until = null,
        updated_at = now()
      where id = ${this.id} and lock_token = ${this.token}
      returning pg_notify(${CHANNEL}, ${this.queue})`;
    this.assertOwned(rows.length);
  }
}
