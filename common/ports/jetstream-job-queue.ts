/**
 * Cluster JobQueue on NATS JetStream.
 *
 * Each queue is a work-queue retention stream (`<prefix>_jobs_<queue>` on subject
 * `<prefix>.jobs.<queue>`) with one durable pull consumer shared by every worker process, so
 * each job goes to one of them and leaves the stream when acked. Job ids travel as
 * Nats-Msg-Id, which the stream deduplicates for its duplicate window. A failure is a nak with
 * the backoff delay; the ack wait is the lease, renewed with `working()` while a handler runs,
 * so a dead process's job is redelivered when it runs out. The server's max_deliver is one
 * more than the consumer's maxDeliveries: that extra delivery reaches a consumer only when the
 * last real one died, and is turned into a dead letter. Dead letters are records in a
 * separate limits stream per queue (`<prefix>_dead_<queue>`).
 */
import {
  AckPolicy,
  type Consumer,
  connect,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type NatsConnection,
  NatsError,
  nanos,
  RetentionPolicy,
  StorageType,
} from 'nats';
import { createLogger, type Logger } from '../log.js';
import { decodePayload, encodePayload } from './bus-wire.js';
import { ConsumerLoop, type Delivery, type DeliverySource } from './job-consumer.js';
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

export interface JetStreamJobQueueOptions {
  /** Namespaces streams and subjects, so several deployments (or test runs) share one server. */
  prefix?: string;
  /** The consumer's ack wait: how long a delivery stays owned without renewal. */
  leaseMs?: number;
  /** How long a job id is remembered for deduplication. */
  dedupeWindowMs?: number;
  /** Stream replicas (1 on a single server, 3 on a production cluster). */
  replicas?: number;
  /** How long one pull waits for a job before asking again. */
  pullExpiresMs?: number;
  /** Dead letters kept per queue; the oldest go first. */
  maxDeadLetters?: number;
  log?: Logger;
}

const DURABLE = 'workers';
const STREAM_NOT_FOUND = 10059;
const CONSUMER_NOT_FOUND = 10014;
const NO_MESSAGE_FOUND = 10037;

function apiErrorCode(error: unknown): number | undefined {
  return error instanceof NatsError ? error.api_error?.err_code : undefined;
}

export class JetStreamJobQueue implements JobQueue {
  readonly leaseMs: number;
  readonly pullExpiresMs: number;
  private readonly prefix: string;
  private readonly dedupeWindowMs: number;
  private readonly replicas: number;
  private readonly maxDeadLetters: number;
  private readonly log: Logger;
  private readonly js: JetStreamClient;
  private jsmPromise: Promise<JetStreamManager> | null = null;
  private readonly streams = new Map<string, Promise<void>>();
  private readonly consumers = new Set<ConsumerLoop>();
  private closed = false;
  private ownsConnection = false;

  /** Opens a connection of its own (reconnecting for ever), which close() then drains. */
  static async connect(
    servers: string,
    options: JetStreamJobQueueOptions & { name?: string } = {},
  ): Promise<JetStreamJobQueue> {
    const nc = await connect({
      servers: servers.split(',').map((server) => server.trim()),
      ...(options.name ? { name: options.name } : {}),
      maxReconnectAttempts: -1,
    });
    const queue = new JetStreamJobQueue(nc, options);
    queue.ownsConnection = true;
    return queue;
  }

  constructor(
    private readonly nc: NatsConnection,
    options: JetStreamJobQueueOptions = {},
  ) {
    this.prefix = options.prefix ?? 'veza';
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(this.prefix))
      throw new Error(`invalid job queue prefix "${this.prefix}"`);
    this.leaseMs = options.leaseMs ?? 30_000;
    this.pullExpiresMs = Math.max(1_000, options.pullExpiresMs ?? 5_000);
    this.dedupeWindowMs = options.dedupeWindowMs ?? 24 * 3600 * 1000;
    this.replicas = options.replicas ?? 1;
    this.maxDeadLetters = options.maxDeadLetters ?? 10_000;
    this.log = options.log ?? createLogger({ name: 'job-queue' });
    this.js = nc.jetstream();
  }

  /** Every stream this queue object made, for tests and tooling that clean up a prefix. */
  streamNames(queue: string): { jobs: string; dead: string } {
    const name = parseQueueName(queue);
    return { jobs: `${this.prefix}_jobs_${name}`, dead: `${this.prefix}_dead_${name}` };
  }

  async enqueue(queue: string, payload: unknown, options: EnqueueOptions = {}): Promise<EnqueueResult> {
    this.assertOpen();
    const name = parseQueueName(queue);
    const jobId = options.jobId === undefined ? crypto.randomUUID() : parseJobId(options.jobId);
    await this.ensureStreams(name);
    const ack = await this.js.publish(this.jobSubject(name), encodePayload(payload), {
      msgID: jobId,
      expect: { streamName: this.streamNames(name).jobs },
    });
    return { jobId, duplicate: ack.duplicate };
  }

  consume(queue: string, handler: JobHandler, options: ConsumeOptions): JobConsumer {
    this.assertOpen();
    const name = parseQueueName(queue);
    const parsed = parseConsumeOptions(options);
    const consumer = () =>
      this.ensureStreams(name).then(() => this.ensureConsumer(name, parsed.maxDeliveries));
    const loop = new ConsumerLoop(new JetStreamSource(this, name, consumer), handler, parsed, this.log);
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
    const stream = this.streamNames(name).dead;
    const jsm = await this.jsm();
    let state: { first_seq: number; last_seq: number; messages: number };
    try {
      state = (await jsm.streams.info(stream)).state;
    } catch (error) {
      if (apiErrorCode(error) === STREAM_NOT_FOUND) return [];
      throw error;
    }
    const letters: DeadLetter[] = [];
    if (state.messages === 0) return letters;
    for (let seq = state.first_seq; seq <= state.last_seq; seq++) {
      try {
        const stored = await jsm.streams.getMessage(stream, { seq });
        letters.push(parseDeadLetter(stored.json<unknown>()));
      } catch (error) {
        if (apiErrorCode(error) !== NO_MESSAGE_FOUND) throw error;
      }
    }
    return letters;
  }

  async stats(queue: string): Promise<QueueStats> {
    const { jobs, dead } = this.streamNames(queue);
    const jsm = await this.jsm();
    const state = async (stream: string) => {
      try {
        return (await jsm.streams.info(stream)).state;
      } catch (error) {
        if (apiErrorCode(error) === STREAM_NOT_FOUND) return null;
        throw error;
      }
    };
    const [work, letters] = await Promise.all([state(jobs), state(dead)]);
    // A work-queue stream holds exactly the jobs not yet acked; its first message is the oldest.
    const depth = work?.messages ?? 0;
    const oldestMs = depth > 0 && work ? Date.now() - Date.parse(work.first_ts) : 0;
    return {
      depth,
      oldestAgeSeconds: Math.max(0, oldestMs / 1000),
      deadLetters: letters?.messages ?? 0,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.consumers].map((loop) => loop.stop({ drain: false })));
    this.consumers.clear();
    // Nak and ack are fire-and-forget: make sure the releases reached the server.
    if (this.nc.isClosed()) return;
    if (this.ownsConnection) await this.nc.drain();
    else await this.nc.flush();
  }

  /** @internal */
  toDelivery(message: JsMsg, queue: string): Delivery {
    return new JetStreamDelivery(this, message, queue);
  }

  /** @internal Records the dead letter, then removes the job from the work stream. */
  async deadLetter(message: JsMsg, queue: string, record: DeadLetter): Promise<void> {
    const { dead } = this.streamNames(queue);
    const wire = { ...record, failedAt: record.failedAt.toISOString() };
    // The id makes a dead letter written twice (ack lost, job redelivered) one record.
    await this.js.publish(this.deadSubject(queue), encodePayload(wire), {
      msgID: `${record.jobId}.${message.seq}`,
      expect: { streamName: dead },
    });
    if (!(await message.ackAck()))
      throw new Error(`job ${record.jobId}: the server did not confirm its removal`);
  }

  /** @internal */
  async flush(): Promise<void> {
    await this.nc.flush();
  }

  private jobSubject(queue: string): string {
    return `${this.prefix}.jobs.${queue}`;
  }

  private deadSubject(queue: string): string {
    return `${this.prefix}.dead.${queue}`;
  }

  private jsm(): Promise<JetStreamManager> {
    this.jsmPromise ??= this.nc.jetstreamManager();
    return this.jsmPromise;
  }

  private ensureStreams(queue: string): Promise<void> {
    let ready = this.streams.get(queue);
    if (!ready) {
      ready = this.createStreams(queue);
      // A failure (server briefly away) must not stick: the next call tries again.
      ready.catch(() => this.streams.delete(queue));
      this.streams.set(queue, ready);
    }
    return ready;
  }

  private async createStreams(queue: string): Promise<void> {
    const jsm = await this.jsm();
    const names = this.streamNames(queue);
    await ensureStream(jsm, {
      name: names.jobs,
      subjects: [this.jobSubject(queue)],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      num_replicas: this.replicas,
      duplicate_window: nanos(this.dedupeWindowMs),
    });
    await ensureStream(jsm, {
      name: names.dead,
      subjects: [this.deadSubject(queue)],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      num_replicas: this.replicas,
      max_msgs: this.maxDeadLetters,
      duplicate_window: nanos(Math.min(this.dedupeWindowMs, 3600 * 1000)),
    });
  }

  private async ensureConsumer(queue: string, maxDeliveries: number): Promise<Consumer> {
    const jsm = await this.jsm();
    const stream = this.streamNames(queue).jobs;
    const config = {
      durable_name: DURABLE,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(this.leaseMs),
      max_deliver: maxDeliveries + 1,
    };
    try {
      const info = await jsm.consumers.info(stream, DURABLE);
      if (info.config.ack_wait !== config.ack_wait || info.config.max_deliver !== config.max_deliver) {
        await jsm.consumers.update(stream, DURABLE, {
          ack_wait: config.ack_wait,
          max_deliver: config.max_deliver,
        });
      }
    } catch (error) {
      if (apiErrorCode(error) !== CONSUMER_NOT_FOUND) throw error;
      await jsm.consumers.add(stream, config);
    }
    return this.js.consumers.get(stream, DURABLE);
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('job queue closed');
  }
}

async function ensureStream(
  jsm: JetStreamManager,
  config: Parameters<JetStreamManager['streams']['add']>[0] & { name: string },
): Promise<void> {
  try {
    await jsm.streams.info(config.name);
  } catch (error) {
    if (apiErrorCode(error) !== STREAM_NOT_FOUND) throw error;
    await jsm.streams.add(config);
  }
}

function parseDeadLetter(value: unknown): DeadLetter {
  const record = (value ?? {}) as Record<string, unknown>;
  return {
    queue: String(record.queue ?? ''),
    jobId: String(record.jobId ?? ''),
    payload: record.payload ?? null,
    reason: String(record.reason ?? ''),
    attempts: Number(record.attempts ?? 0),
    failedAt: new Date(String(record.failedAt ?? 0)),
  };
}

class JetStreamSource implements DeliverySource {
  readonly renewEveryMs: number;
  private consumer: Promise<Consumer> | null = null;

  constructor(
    private readonly queue: JetStreamJobQueue,
    private readonly name: string,
    private readonly makeConsumer: () => Promise<Consumer>,
  ) {
    this.renewEveryMs = Math.max(50, Math.floor(queue.leaseMs / 3));
  }

  /** Made once and shared by the slots; a failure (server away at start) is retried on the next pull. */
  private getConsumer(): Promise<Consumer> {
    if (!this.consumer) {
      const made = this.makeConsumer();
      made.catch(() => {
        if (this.consumer === made) this.consumer = null;
      });
      this.consumer = made;
    }
    return this.consumer;
  }

  async next(signal: AbortSignal): Promise<Delivery | null> {
    const consumer = await this.getConsumer();
    if (signal.aborted) return null;
    const messages = await consumer.fetch({ max_messages: 1, expires: this.queue.pullExpiresMs });
    const onAbort = () => {
      void messages.close();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const message of messages) {
        return this.queue.toDelivery(message, this.name);
      }
      return null;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }
}

class JetStreamDelivery implements Delivery {
  readonly jobId: string;
  readonly payload: unknown;
  readonly attempt: number;
  readonly lastError: string | null = null;

  constructor(
    private readonly owner: JetStreamJobQueue,
    private readonly message: JsMsg,
    private readonly queue: string,
  ) {
    this.jobId = message.headers?.get('Nats-Msg-Id') || `seq-${message.seq}`;
    this.attempt = message.info.deliveryCount;
    let payload: unknown;
    try {
      payload = decodePayload(message.string());
    } catch {
      // Not from enqueue(): the handler's validation rejects the raw text.
      payload = message.string();
    }
    this.payload = payload;
  }

  async ack(): Promise<void> {
    if (!(await this.message.ackAck()))
      throw new Error(`job ${this.jobId}: the server did not confirm the ack`);
  }

  async retry(delayMs: number): Promise<void> {
    this.message.nak(delayMs);
    await this.owner.flush();
  }

  async release(): Promise<void> {
    this.message.nak();
    await this.owner.flush();
  }

  async deadLetter(reason: string): Promise<void> {
    await this.owner.deadLetter(this.message, this.queue, {
      queue: this.queue,
      jobId: this.jobId,
      payload: this.payload,
      reason,
      attempts: this.attempt,
      failedAt: new Date(),
    });
  }

  async renew(): Promise<boolean> {
    // JetStream does not say whether the lease was still ours; an expired one shows up as a
    // redelivery elsewhere, which idempotent handlers tolerate.
    this.message.working();
    return true;
  }
}
