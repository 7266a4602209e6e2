/**
 * JobQueue port: durable background jobs with acknowledgement, redelivery with backoff and
 * dead letters.
 *
 * Delivery is at least once. A handler that resolves acknowledges its job; one that throws
 * makes the job come back after the backoff of that attempt; after `maxDeliveries` deliveries
 * the job becomes a dead letter carrying the last error message and is never delivered again.
 * A consumer that dies holding a job (process killed, connection lost) stops renewing its
 * lease, and the job is delivered again once the lease expires. Handlers therefore must be
 * idempotent, and watch `signal`: it aborts when the job was taken away from them (lease lost,
 * consumer stopped without drain), after which nothing they do counts.
 *
 * Payloads are JSON values; every handler validates what it receives.
 *
 * Adapters: PostgreSQL (standalone: jobs survive restarts) and NATS JetStream (cluster),
 * covered by one contract test.
 */
import { z } from 'zod';
import { InvalidArgumentError } from '../contracts/index.js';

export interface EnqueueOptions {
  /**
   * Idempotency key: enqueueing the same id twice makes one job. Kept while the job is queued
   * or running and then until the retention sweep deletes the finished job (JOB_RETENTION_DAYS,
   * DEAD_JOB_RETENTION_DAYS) by the PostgreSQL adapter, and for the stream's duplicate window
   * (24 h by default) by JetStream.
   */
  jobId?: string;
}

export interface EnqueueResult {
  jobId: string;
  /** True when a job with this id already existed, so nothing was added. */
  duplicate: boolean;
}

export interface JobContext {
  jobId: string;
  /** 1 on the first delivery. */
  attempt: number;
  maxDeliveries: number;
  /** Aborted when this delivery no longer owns the job (see the module comment). */
  signal: AbortSignal;
}

export type JobHandler = (payload: unknown, context: JobContext) => Promise<void>;

export interface ConsumeOptions {
  /** Jobs this consumer runs at once. */
  concurrency: number;
  /** Deliveries before a failing job becomes a dead letter (1 = no retry). */
  maxDeliveries: number;
  /**
   * Delay before redelivery after the n-th failed attempt is `backoffMs[n - 1]`; the last
   * value repeats. An empty list redelivers at once.
   */
  backoffMs: number[];
}

export interface JobConsumer {
  /**
   * Stops taking jobs. With `drain` the jobs in flight run to completion first (and are acked
   * or nacked as usual); without it they are released for immediate redelivery and their
   * handlers' signals abort. A later call without drain cuts a draining stop short.
   */
  stop(options: { drain: boolean }): Promise<void>;
}

export interface DeadLetter {
  queue: string;
  jobId: string;
  payload: unknown;
  /** The last error message. */
  reason: string;
  attempts: number;
  failedAt: Date;
}

/** A queue's backlog, for the metrics and the alerts on a stuck or overflowing queue. */
export interface QueueStats {
  /** Jobs waiting or running (not yet acknowledged or dead). */
  depth: number;
  /** Age of the oldest of those jobs, 0 when there is none. */
  oldestAgeSeconds: number;
  /** Dead letters kept for the queue. */
  deadLetters: number;
}

export interface JobQueue {
  enqueue(queue: string, payload: unknown, options?: EnqueueOptions): Promise<EnqueueResult>;
  consume(queue: string, handler: JobHandler, options: ConsumeOptions): JobConsumer;
  /** Oldest first. */
  deadLetters(queue: string): Promise<DeadLetter[]>;
  stats(queue: string): Promise<QueueStats>;
  /** Stops every consumer of this queue object (releasing jobs in flight) and frees its resources. */
  close(): Promise<void>;
}

/**
 * Thrown by a handler when retrying cannot help (e.g. a payload that fails validation):
 * the job becomes a dead letter at once, with this error's message as the reason.
 */
export class UnrecoverableJobError extends Error {
  override readonly name = 'UnrecoverableJobError';
}

const queueName = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, 'a queue name is 1-64 letters, digits, "_" or "-"');
const jobIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9._:-]{1,200}$/, 'a job id is 1-200 letters, digits or "._:-"');
const consumeSchema = z.object({
  concurrency: z.number().int().min(1).max(1000),
  maxDeliveries: z.number().int().min(1).max(100),
  backoffMs: z
    .array(
      z
        .number()
        .int()
        .min(0)
        .max(24 * 3600 * 1000),
    )
    .max(100),
});

function parse<T>(schema: z.ZodType<T>, value: unknown, field: string): T {
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue && issue.path.length > 0 ? `${field}.${issue.path.join('.')}` : field;
    throw new InvalidArgumentError(`${where}: ${issue?.message ?? 'invalid'}`, where);
  }
  return result.data;
}

export function parseQueueName(queue: unknown): string {
  return parse(queueName, queue, 'queue');
}

export function parseJobId(jobId: unknown): string {
  return parse(jobIdSchema, jobId, 'jobId');
}

export function parseConsumeOptions(options: unknown): ConsumeOptions {
  return parse(consumeSchema, options, 'options');
}

/** The delay before the delivery after failed attempt `attempt` (1-based). */
export function backoffFor(backoffMs: readonly number[], attempt: number): number {
  if (backoffMs.length === 0) return 0;
  return backoffMs[Math.min(attempt, backoffMs.length) - 1] ?? 0;
}

export function errorMessage(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.length > 0 ? text.slice(0, 2000) : 'unknown error';
}
