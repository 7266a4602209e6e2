/**
 * One contract for both JobQueue adapters: PostgreSQL (on the run's embedded server) and
 * NATS JetStream (on the machine's server, under a prefix unique to this run).
 */
import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { InvalidArgumentError } from '../contracts/index.js';
import { connectDatabase } from '../db/index.js';
import { createLogger } from '../log.js';
import { clusterServices, createTestDatabase, type TestDatabase } from '../testing/index.js';
import { JetStreamJobQueue } from './jetstream-job-queue.js';
import { type JobConsumer, type JobContext, type JobQueue, UnrecoverableJobError } from './job-queue.js';
import { PgJobQueue } from './pg-job-queue.js';

const log = createLogger({ level: 'silent', name: 'job-queue-test' });

interface Harness {
  /** A queue object sharing this harness's connection. */
  queue(options?: { leaseMs?: number }): JobQueue;
  /** A queue object on its own connection, and a way to kill that connection as a crash would. */
  isolated(options: { leaseMs: number }): Promise<{ queue: JobQueue; crash(): Promise<void> }>;
  teardown(): Promise<void>;
}

async function postgresHarness(): Promise<Harness> {
  const db: TestDatabase = await createTestDatabase('embedded');
  const extra: Array<() => Promise<void>> = [];
  return {
    queue: (options = {}) => new PgJobQueue(db.sql, { leaseMs: options.leaseMs ?? 60_000, pollMs: 250, log }),
    async isolated({ leaseMs }) {
      const sql = connectDatabase(db.url, { max: 3 });
      extra.push(() => sql.end({ timeout: 0 }));
      return {
        queue: new PgJobQueue(sql, { leaseMs, pollMs: 250, log }),
        crash: () => sql.end({ timeout: 0 }),
      };
    },
    async teardown() {
      for (const close of extra) await close();
      await db.drop();
    },
  };
}

async function jetStreamHarness(): Promise<Harness> {
  const prefix = `t${randomBytes(5).toString('hex')}`;
  const nc: NatsConnection = await connect({ servers: clusterServices.natsUrl });
  const extra: NatsConnection[] = [];
  const options = (leaseMs: number) => ({ prefix, leaseMs, pullExpiresMs: 1_000, log });
  return {
    queue: (opts = {}) => new JetStreamJobQueue(nc, options(opts.leaseMs ?? 60_000)),
    async isolated({ leaseMs }) {
      const own = await connect({ servers: clusterServices.natsUrl });
      extra.push(own);
      return {
        queue: new JetStreamJobQueue(own, options(leaseMs)),
        crash: () => own.close(),
      };
    },
    async teardown() {
      for (const own of extra) if (!own.isClosed()) await own.close();
      const jsm = await nc.jetstreamManager();
      for await (const stream of jsm.streams.list()) {
        if (stream.config.name.startsWith(`${prefix}_`)) await jsm.streams.delete(stream.config.name);
      }
      await nc.close();
    },
  };
}

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

let queueCounter = 0;
const freshQueue = () => `q${++queueCounter}`;

const options = { concurrency: 1, maxDeliveries: 3, backoffMs: [] as number[] };

/**
 * Proves that nothing else of `queue` is still due: a job enqueued now is handled by a
 * concurrency-1 consumer only after every job that was due before it (both stores are FIFO).
 */
async function drainedThroughSentinel(queue: JobQueue, name: string, seen: unknown[]): Promise<void> {
  const sentinel = deferred();
  const consumer = queue.consume(
    name,
    async (payload, context) => {
      seen.push(payload);
      if (payload === 'sentinel') {
        // A first delivery: no stopped consumer's pull swallowed it.
        expect(context.attempt).toBe(1);
        sentinel.resolve();
      }
    },
    options,
  );
  await queue.enqueue(name, 'sentinel');
  await sentinel.promise;
  await consumer.stop({ drain: true });
}

describe.each([
  ['postgres', postgresHarness],
  ['jetstream', jetStreamHarness],
] as const)('JobQueue contract (%s)', (_kind, makeHarness) => {
  let harness: Harness;
  let queue: JobQueue;
  const consumers: JobConsumer[] = [];
  const track = (consumer: JobConsumer) => {
    consumers.push(consumer);
    return consumer;
  };

  beforeAll(async () => {
    harness = await makeHarness();
    queue = harness.queue();
  });

  afterAll(async () => {
    for (const consumer of consumers) await consumer.stop({ drain: false });
    await queue?.close();
    await harness?.teardown();
  });

  it('delivers each job once and forgets it after the ack', async () => {
    const name = freshQueue();
    const seen: unknown[] = [];
    const all = deferred();
    for (const n of [1, 2, 3]) await queue.enqueue(name, { n, at: new Date(0) });
    const consumer = track(
      queue.consume(
        name,
        async (payload) => {
          seen.push(payload);
          if (seen.length === 3) all.resolve();
        },
        options,
      ),
    );
    await all.promise;
    await consumer.stop({ drain: true });
    // Payloads cross as JSON: the Date arrives as its string.
    expect(seen).toEqual([1, 2, 3].map((n) => ({ n, at: '1970-01-01T00:00:00.000Z' })));

    const after: unknown[] = [];
    await drainedThroughSentinel(queue, name, after);
    expect(after).toEqual(['sentinel']);
  });

  it('redelivers a failed job after the backoff of that attempt', async () => {
    const name = freshQueue();
    const attempts: Array<{ attempt: number; at: number }> = [];
    const done = deferred();
    track(
      queue.consume(
        name,
        async (_payload, context) => {
          attempts.push({ attempt: context.attempt, at: performance.now() });
          if (context.attempt < 3) throw new Error(`failure ${context.attempt}`);
          done.resolve();
        },
        { concurrency: 1, maxDeliveries: 5, backoffMs: [300, 700] },
      ),
    );
    await queue.enqueue(name, 'flaky');
    await done.promise;
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3]);
    const [first, second, third] = attempts as [
      (typeof attempts)[0],
      (typeof attempts)[0],
      (typeof attempts)[0],
    ];
    // A little slack for timer granularity; the point is that neither retry came early.
    expect(second.at - first.at).toBeGreaterThanOrEqual(280);
    expect(third.at - second.at).toBeGreaterThanOrEqual(680);
    expect(await queue.deadLetters(name)).toEqual([]);
  });

  it('reports the backlog: jobs waiting, the age of the oldest, dead letters', async () => {
    const name = freshQueue();
    expect(await queue.stats(name)).toEqual({ depth: 0, oldestAgeSeconds: 0, deadLetters: 0 });
    await queue.enqueue(name, 'first');
    await queue.enqueue(name, 'second');
    const before = Date.now();
    await vi.waitFor(
      async () => {
        const stats = await queue.stats(name);
        expect(stats.depth).toBe(2);
        // Ages come from the server's clock: allow its rounding, but it must grow while nothing consumes.
        expect(stats.oldestAgeSeconds).toBeGreaterThan((Date.now() - before) / 1000 - 0.05);
        expect(stats.oldestAgeSeconds).toBeGreaterThan(0.2);
      },
      { timeout: 5_000, interval: 100 },
    );
    expect((await queue.stats(name)).oldestAgeSeconds).toBeLessThan(30);
    const seen: unknown[] = [];
    await drainedThroughSentinel(queue, name, seen);
    expect(seen).toEqual(['first', 'second', 'sentinel']);
    // JetStream removes an acked job when its ack arrives, which the consumer does not wait for.
    await vi.waitFor(
      async () => expect(await queue.stats(name)).toEqual({ depth: 0, oldestAgeSeconds: 0, deadLetters: 0 }),
      { timeout: 5_000, interval: 50 },
    );
  });

  it('dead-letters a job after maxDeliveries with the last error, and never delivers it again', async () => {
    const name = freshQueue();
    let calls = 0;
    const consumer = track(
      queue.consume(
        name,
        async (_payload, context) => {
          calls += 1;
          throw new Error(`boom on attempt ${context.attempt}`);
        },
        { concurrency: 1, maxDeliveries: 2, backoffMs: [50] },
      ),
    );
    const { jobId } = await queue.enqueue(name, { track: 7 }, { jobId: 'job-7' });
    expect(jobId).toBe('job-7');
    await vi.waitFor(async () => expect(await queue.deadLetters(name)).toHaveLength(1), { timeout: 10_000 });
    await consumer.stop({ drain: true });
    const [letter] = await queue.deadLetters(name);
    expect(letter).toMatchObject({
      queue: name,
      jobId: 'job-7',
      payload: { track: 7 },
      reason: 'boom on attempt 2',
      attempts: 2,
    });
    expect(letter?.failedAt).toBeInstanceOf(Date);
    expect(calls).toBe(2);
    await vi.waitFor(
      async () => expect(await queue.stats(name)).toEqual({ depth: 0, oldestAgeSeconds: 0, deadLetters: 1 }),
      { timeout: 5_000, interval: 50 },
    );

    const after: unknown[] = [];
    await drainedThroughSentinel(queue, name, after);
    expect(after).toEqual(['sentinel']);
  });

  it('dead-letters at once when the handler says retrying cannot help', async () => {
    const name = freshQueue();
    let calls = 0;
    track(
      queue.consume(
        name,
        async () => {
          calls += 1;
          throw new UnrecoverableJobError('payload.trackId: expected a number');
        },
        { concurrency: 1, maxDeliveries: 5, backoffMs: [10] },
      ),
    );
    await queue.enqueue(name, { trackId: 'x' });
    await vi.waitFor(async () => expect(await queue.deadLetters(name)).toHaveLength(1), { timeout: 10_000 });
    expect(calls).toBe(1);
    expect((await queue.deadLetters(name))[0]).toMatchObject({
      reason: 'payload.trackId: expected a number',
      attempts: 1,
    });
  });

  it('makes one job of two enqueues with the same jobId', async () => {
    const name = freshQueue();
    const first = await queue.enqueue(name, 'original', { jobId: 'track-42:abc' });
    const second = await queue.enqueue(name, 'copy', { jobId: 'track-42:abc' });
    expect(first).toEqual({ jobId: 'track-42:abc', duplicate: false });
    expect(second).toEqual({ jobId: 'track-42:abc', duplicate: true });
    const seen: unknown[] = [];
    await drainedThroughSentinel(queue, name, seen);
    expect(seen).toEqual(['original', 'sentinel']);
  });

  it('never runs more jobs at once than the concurrency of each consumer', async () => {
    const name = freshQueue();
    let active = 0;
    let peak = 0;
    let finished = 0;
    const all = deferred();
    const handler = async () => {
      active += 1;
      peak = Math.max(peak, active);
      // Real work takes time; this is the job's duration, not a wait for readiness.
      await new Promise((resolve) => setTimeout(resolve, 60));
      active -= 1;
      finished += 1;
      if (finished === 10) all.resolve();
    };
    for (let n = 0; n < 10; n++) await queue.enqueue(name, n);
    const a = track(queue.consume(name, handler, { ...options, concurrency: 2 }));
    const b = track(queue.consume(name, handler, { ...options, concurrency: 1 }));
    await all.promise;
    await Promise.all([a.stop({ drain: true }), b.stop({ drain: true })]);
    expect(peak).toBeLessThanOrEqual(3);
    expect(peak).toBeGreaterThanOrEqual(2);
  });

  it('lets jobs in flight finish on a draining stop', async () => {
    const name = freshQueue();
    const started = deferred();
    const gate = deferred();
    let completed = 0;
    const consumer = queue.consume(
      name,
      async () => {
        started.resolve();
        await gate.promise;
        completed += 1;
      },
      options,
    );
    await queue.enqueue(name, 'slow');
    await started.promise;
    const stopping = consumer.stop({ drain: true });
    gate.resolve();
    await stopping;
    expect(completed).toBe(1);
    const after: unknown[] = [];
    await drainedThroughSentinel(queue, name, after);
    expect(after).toEqual(['sentinel']);
  });

  it('releases jobs in flight at once on a stop without drain; the job then completes exactly once', async () => {
    const name = freshQueue();
    const started = deferred<JobContext>();
    const first = queue.consume(
      name,
      async (_payload, context) => {
        started.resolve(context);
        // Hangs like a stuck ffmpeg would; only the abort ends it.
        await new Promise((_resolve, reject) =>
          context.signal.addEventListener('abort', () => reject(context.signal.reason)),
        );
      },
      options,
    );
    await queue.enqueue(name, 'job', { jobId: 'released-1' });
    const context = await started.promise;
    // The lease is 60 s: a redelivery before the test times out proves the release, not an expiry.
    await first.stop({ drain: false });
    expect(context.signal.aborted).toBe(true);

    const completions: JobContext[] = [];
    const done = deferred();
    const second = track(
      queue.consume(
        name,
        async (_payload, ctx) => {
          completions.push(ctx);
          done.resolve();
        },
        options,
      ),
    );
    await done.promise;
    await second.stop({ drain: true });
    expect(completions.map((c) => [c.jobId, c.attempt])).toEqual([['released-1', 2]]);
    const after: unknown[] = [];
    await drainedThroughSentinel(queue, name, after);
    expect(after).toEqual(['sentinel']);
    expect(await queue.deadLetters(name)).toEqual([]);
  });

  it('redelivers the job of a consumer that died once its lease expires, and it completes exactly once', async () => {
    const name = freshQueue();
    const dying = await harness.isolated({ leaseMs: 1_000 });
    const started = deferred();
    const doomed = dying.queue.consume(
      name,
      async () => {
        started.resolve();
        await new Promise(() => {});
      },
      options,
    );
    await dying.queue.enqueue(name, 'job', { jobId: 'crash-1' });
    await started.promise;
    await dying.crash();

    const survivor = harness.queue({ leaseMs: 1_000 });
    const completions: JobContext[] = [];
    const done = deferred();
    const consumer = survivor.consume(
      name,
      async (_payload, context) => {
        completions.push(context);
        done.resolve();
      },
      options,
    );
    await done.promise;
    await consumer.stop({ drain: true });
    expect(completions.map((c) => [c.jobId, c.attempt])).toEqual([['crash-1', 2]]);
    const after: unknown[] = [];
    await drainedThroughSentinel(survivor, name, after);
    expect(after).toEqual(['sentinel']);
    await doomed.stop({ drain: false });
    await survivor.close();
  });

  it('dead-letters a job whose last delivery died with its consumer', async () => {
    const name = freshQueue();
    const dying = await harness.isolated({ leaseMs: 1_000 });
    const started = deferred();
    const single = { concurrency: 1, maxDeliveries: 1, backoffMs: [] };
    const doomed = dying.queue.consume(
      name,
      async () => {
        started.resolve();
        await new Promise(() => {});
      },
      single,
    );
    await dying.queue.enqueue(name, 'job', { jobId: 'crash-2' });
    await started.promise;
    await dying.crash();

    const survivor = harness.queue({ leaseMs: 1_000 });
    let calls = 0;
    const consumer = survivor.consume(
      name,
      async () => {
        calls += 1;
      },
      single,
    );
    await vi.waitFor(async () => expect(await survivor.deadLetters(name)).toHaveLength(1), {
      timeout: 10_000,
    });
    await consumer.stop({ drain: true });
    expect(calls).toBe(0);
    expect((await survivor.deadLetters(name))[0]?.reason).toMatch(
      /^abandoned: delivery 1 ended without an acknowledgement/,
    );
    await doomed.stop({ drain: false });
    await survivor.close();
  });

  it('rejects malformed queue names, job ids and options, naming the field', async () => {
    await expect(queue.enqueue('bad name', 1)).rejects.toThrow(InvalidArgumentError);
    await expect(queue.enqueue('ok', 1, { jobId: 'a b' })).rejects.toMatchObject({
      details: { field: 'jobId' },
    });
    expect(() =>
      queue.consume('ok', async () => {}, { concurrency: 0, maxDeliveries: 1, backoffMs: [] }),
    ).toThrow(/options\.concurrency/);
  });
});
