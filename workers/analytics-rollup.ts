/**
 * The analytics roll-up: a durable job per stream and hour. The worker reads the hour's raw
 * events through the analytics module (bus request), computes the per-minute rows here, and
 * writes them back, replacing the hour as a whole. A job redelivered after a crash (at any point)
 * therefore writes the same rows again: nothing is counted twice, and a crash between read and
 * write loses nothing, as the job comes back.
 */
import {
  ANALYTICS_ROLLUP_QUEUE,
  ANALYTICS_ROLLUP_READ,
  ANALYTICS_ROLLUP_WRITE,
  type RollupInput,
  type RollupJob,
  type RollupMinute,
  type RollupOutput,
  rollupInputSchema,
  rollupJobSchema,
} from '../common/contracts/index.js';
import { counter, type Logger } from '../common/index.js';
import {
  type EventBus,
  type JobConsumer,
  type JobQueue,
  UnrecoverableJobError,
} from '../common/ports/index.js';

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;

const rollups = counter('veza_analytics_rollups_total', 'Analytics roll-up jobs by outcome', ['outcome']);

/** The per-minute rows of one stream's hour, from its raw sessions, samples and counts. */
export function computeRollup(input: RollupInput): RollupOutput {
  const hour = Date.parse(input.hour);
  const hourEnd = hour + HOUR_MS;
  const startedAt = Date.parse(input.started_at);
  const endedAt = input.ended_at === null ? null : Date.parse(input.ended_at);
  const horizon = Math.min(hourEnd, endedAt ?? Date.parse(input.now));
  const firstMinute = Math.max(hour, Math.floor(startedAt / MINUTE_MS) * MINUTE_MS);

  const minutes = new Map<number, RollupMinute>();
  const minuteAt = (t: number): RollupMinute => {
    let m = minutes.get(t);
    if (!m) {
      m = {
        minute: new Date(t).toISOString(),
        peak_listeners: 0,
        listener_seconds: 0,
        quality: {},
        chat_messages: 0,
        reports: 0,
        moderator_actions: 0,
        countries: {},
      };
      minutes.set(t, m);
    }
    return m;
  };
  // Every minute of the stream's span in this hour has a row, listened to or not.
  for (let t = firstMinute; t < horizon; t += MINUTE_MS) minuteAt(t);

  const listeners = new Map<string, { country: string; seconds: number }>();
  const edges: Array<{ t: number; delta: 1 | -1 }> = [];
  for (const session of input.sessions) {
    const start = Math.max(Date.parse(session.joined_at), hour);
    const left = session.left_at === null ? Number.POSITIVE_INFINITY : Date.parse(session.left_at);
    const end = Math.min(left, endedAt ?? Number.POSITIVE_INFINITY, horizon);
    if (end <= start) continue;
    edges.push({ t: start, delta: 1 }, { t: end, delta: -1 });
    for (let t = Math.floor(start / MINUTE_MS) * MINUTE_MS; t < end; t += MINUTE_MS) {
      const seconds = (Math.min(end, t + MINUTE_MS) - Math.max(start, t)) / 1000;
      const minute = minuteAt(t);
      minute.listener_seconds += seconds;
      minute.countries[session.country] = (minute.countries[session.country] ?? 0) + seconds;
    }
    const listener = listeners.get(session.listener_key) ?? { country: session.country, seconds: 0 };
    listener.seconds += (end - start) / 1000;
    listeners.set(session.listener_key, listener);
  }

  // Peak concurrency per minute: a sweep over joins and leaves, leaves first at equal times.
  edges.sort((a, b) => a.t - b.t || a.delta - b.delta);
  let current = 0;
  let next = 0;
  for (const t of [...minutes.keys()].sort((a, b) => a - b)) {
    while (next < edges.length && (edges[next]?.t ?? 0) <= t) current += edges[next++]?.delta ?? 0;
    let peak = current;
    while (next < edges.length && (edges[next]?.t ?? 0) < t + MINUTE_MS) {
      current += edges[next++]?.delta ?? 0;
      peak = Math.max(peak, current);
    }
    const minute = minuteAt(t);
    minute.peak_listeners = peak;
  }

  for (const row of input.quality) minuteAt(Date.parse(row.minute)).quality = row.quality;
  for (const row of input.counts) {
    const minute = minuteAt(Date.parse(row.minute));
    minute.chat_messages = row.chat_messages;
    minute.reports = row.reports;
    minute.moderator_actions = row.moderator_actions;
  }

  return {
    stream_id: input.stream_id,
    hour: input.hour,
    minutes: [...minutes.values()].sort((a, b) => a.minute.localeCompare(b.minute)),
    listeners: [...listeners.entries()].map(([listener_key, l]) => ({
      listener_key,
      country: l.country,
      seconds: l.seconds,
    })),
    final: input.ended_at !== null,
  };
}

/** One job: read, compute, write. Exported for the crash test, which runs it around a failure. */
export async function rollUp(bus: EventBus, job: RollupJob): Promise<RollupOutput | null> {
  const raw = await bus.request(ANALYTICS_ROLLUP_READ, job, { timeoutMs: 30_000 });
  if (raw === null) return null;
  const input = rollupInputSchema.parse(raw);
  const output = computeRollup(input);
  await bus.request(ANALYTICS_ROLLUP_WRITE, output, { timeoutMs: 30_000 });
  return output;
}

export interface RollupWorkerOptions {
  jobs: JobQueue;
  bus: EventBus;
  log: Logger;
  concurrency?: number;
  /** Test hook: runs after a job's rows were written and before it is acknowledged. */
  afterWrite?: (job: RollupJob, attempt: number) => Promise<void>;
}

export interface RollupWorker {
  close(): Promise<void>;
}

export function startRollupWorker(options: RollupWorkerOptions): RollupWorker {
  const consumer: JobConsumer = options.jobs.consume(
    ANALYTICS_ROLLUP_QUEUE,
    async (payload, context) => {
      const parsed = rollupJobSchema.safeParse(payload);
      if (!parsed.success) {
        rollups.inc({ outcome: 'invalid' });
        throw new UnrecoverableJobError(`invalid analytics roll-up job: ${parsed.error.issues[0]?.message}`);
      }
      try {
        const output = await rollUp(options.bus, parsed.data);
        if (!output) {
          options.log.warn({ job: parsed.data }, 'roll-up of an unknown stream: nothing to do');
          rollups.inc({ outcome: 'unknown_stream' });
          return;
        }
        await options.afterWrite?.(parsed.data, context.attempt);
        rollups.inc({ outcome: 'done' });
      } catch (error) {
        rollups.inc({ outcome: 'failed' });
        options.log.warn(
          { err: error, job: parsed.data, attempt: context.attempt },
          'analytics roll-up failed',
        );
        throw error;
      }
    },
    { concurrency: options.concurrency ?? 1, maxDeliveries: 10, backoffMs: [200, 1000, 5000, 30_000] },
  );
  return {
    close: () => consumer.stop({ drain: true }),
  };
}
