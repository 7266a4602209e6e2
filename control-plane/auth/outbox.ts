/**
 * The email outbox. Mail is written to `email_outbox` in the transaction that causes it
 * (so a rolled-back registration sends nothing), and a dispatcher delivers it. Rows are
 * claimed with FOR UPDATE SKIP LOCKED, so several control planes share the work
 * without sending a message twice.
 */

import type { Sql, TransactionSql } from '../../common/db/index.js';
import type { Logger } from '../../common/index.js';
import type { Mailer } from './mailer.js';

export interface QueuedEmail {
  to: string;
  subject: string;
  text: string;
  /** What the mail is for, e.g. "email_confirmation". */
  kind: string;
}

export async function enqueueEmail(db: Sql | TransactionSql, email: QueuedEmail): Promise<number> {
  const [row] = await db<{ id: number }[]>`
    insert into email_outbox (to_address, subject, body_text, kind)
    values (${email.to}, ${email.subject}, ${email.text}, ${email.kind})
    returning id`;
  if (!row) throw new Error('insert into email_outbox returned nothing');
  return row.id;
}

/**
 * The retention sweep: deletes at most `limit` outbox rows created more than `retain.deliveredMs`
 * ago and delivered (sent, or logged without SMTP), or more than `retain.failedMs` ago and given
 * up on (failed); returns how many. Pending rows stay whatever their age.
 */
export async function deleteSettledEmails(
  sql: Sql,
  retain: { deliveredMs: number; failedMs: number },
  limit: number,
): Promise<number> {
  const delivered = sql`now() - ${retain.deliveredMs}::double precision * interval '1 millisecond'`;
  const failed = sql`now() - ${retain.failedMs}::double precision * interval '1 millisecond'`;
  // The first bound on created_at lets the email_outbox_settled index narrow the scan.
  const result = await sql`
    delete from email_outbox where id in (
      select id from email_outbox
      where status <> 'pending'
        and created_at < greatest(${delivered}, ${failed})
        and created_at < case when status = 'failed' then ${failed} else ${delivered} end
      limit ${limit}
      for update skip locked)`;
  return result.count;
}

export interface OutboxDispatcher {
  /** Delivers what is pending now instead of at the next poll. */
  wake(): void;
  /** One pass over the pending rows; returns how many were handled (delivered or failed). */
  runOnce(): Promise<number>;
  stop(): Promise<void>;
}

export interface OutboxOptions {
  sql: Sql;
  mailer: Mailer;
  log: Logger;
  /** Pending rows written by another process are picked up within this interval. */
  pollIntervalMs?: number;
  batchSize?: number;
  /** A row that failed this many times is marked failed and left alone. */
  maxAttempts?: number;
}

interface OutboxRow {
  id: number;
  to_address: string;
  subject: string;
  body_text: string;
  attempts: number;
}

/** Returns how many rows were claimed and how many of them went out. */
async function deliverBatch(
  options: Required<Omit<OutboxOptions, 'pollIntervalMs'>>,
): Promise<{ claimed: number; delivered: number }> {
  const { sql, mailer, log, batchSize, maxAttempts } = options;
  return sql.begin(async (tx) => {
    const rows = await tx<OutboxRow[]>`
      select id, to_address, subject, body_text, attempts from email_outbox
      where status = 'pending' order by id limit ${batchSize}
      for update skip locked`;
    let delivered = 0;
    for (const row of rows) {
      try {
        const delivery = await mailer.send({ to: row.to_address, subject: row.subject, text: row.body_text });
        await tx`
          update email_outbox set status = ${delivery}, attempts = attempts + 1, sent_at = now(), last_error = null
          where id = ${row.id}`;
        delivered += 1;
      } catch (error) {
        const attempts = row.attempts + 1;
        const status = attempts >= maxAttempts ? 'failed' : 'pending';
        const message = error instanceof Error ? error.message : String(error);
        await tx`
          update email_outbox set status = ${status}, attempts = ${attempts}, last_error = ${message.slice(0, 1000)}
          where id = ${row.id}`;
        log.warn({ err: error, outboxId: row.id, attempts, status }, 'email delivery failed');
      }
    }
    return { claimed: rows.length, delivered };
  });
}

export function startOutboxDispatcher(options: OutboxOptions): OutboxDispatcher {
  const settings = {
    sql: options.sql,
    mailer: options.mailer,
    log: options.log.child({ component: 'outbox' }),
    batchSize: options.batchSize ?? 20,
    maxAttempts: options.maxAttempts ?? 5,
  };
  const pollIntervalMs = options.pollIntervalMs ?? 5000;
  let stopped = false;
  let running: Promise<number> | null = null;
  let again = false;
  let timer: NodeJS.Timeout | undefined;

  const runOnce = (): Promise<number> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      let handled = 0;
      try {
        do {
          again = false;
          // A full batch that went out may mean more is waiting; failures wait for the next poll.
          let batch: { claimed: number; delivered: number };
          do {
            batch = await deliverBatch(settings);
            handled += batch.claimed;
          } while (batch.claimed === settings.batchSize && batch.delivered === batch.claimed && !stopped);
        } while (again && !stopped);
      } catch (error) {
        settings.log.error({ err: error }, 'outbox pass failed');
      } finally {
        running = null;
      }
      return handled;
    })();
    return running;
  };

  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      void runOnce().finally(schedule);
    }, pollIntervalMs);
    timer.unref();
  };
  schedule();
  void runOnce();

  return {
    wake: () => {
      if (!stopped) void runOnce();
    },
    runOnce,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      if (running) await running;
      settings.mailer.close();
    },
  };
}
