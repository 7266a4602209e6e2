/**
 * How audience events reach the store: the edges' `analytics.events`, the stream lifecycle and
 * chat activity heard on the bus, batched into one insert per flush. Each stored event is
 * republished on `analytics.recorded.<streamId>` by the control plane that stored it (the dedupe
 * key makes that one). Also the analytics module's side of the roll-up: it answers the worker's
 * read and write, and queues the jobs (each live stream's current hour every interval, and every
 * hour of a stream once more after it ended).
 */
import {
  ALL_ROOMS,
  ANALYTICS_EVENTS,
  ANALYTICS_ROLLUP_QUEUE,
  ANALYTICS_ROLLUP_READ,
  ANALYTICS_ROLLUP_WRITE,
  type AnalyticsEventWire,
  analyticsEvent,
  analyticsEventSchema,
  analyticsRecordedSubject,
  hourOf,
  parseRoomEvents,
  parseRoomStateEvent,
  type RecordedAnalyticsEvent,
  type RollupJob,
  rollupJobId,
  rollupJobSchema,
  rollupOutputSchema,
  STREAM_ENDED,
  STREAM_STARTED,
  streamEndedEventSchema,
  streamStartedEventSchema,
} from '../../common/contracts/index.js';
import type { Sql } from '../../common/db/index.js';
import { counter, type Logger } from '../../common/index.js';
import type { EventBus, JobQueue, Subscription } from '../../common/ports/index.js';
import type { AudienceStore } from './audience-store.js';
import { insertAudienceEvents } from './events-store.js';

const HOUR_MS = 3_600_000;
const FLUSH_MS = 200;
const FLUSH_MAX = 500;
/** Beyond this many waiting events the oldest are dropped (the database is not keeping up). */
const BUFFER_MAX = 50_000;

const received = counter('veza_analytics_events_total', 'Audience events received from the bus, by type', [
  'type',
]);
const dropped = counter('veza_analytics_events_dropped_total', 'Audience events dropped, by reason', [
  'reason',
]);

export interface IngestOptions {
  sql: Sql;
  bus: EventBus;
  jobs: JobQueue;
  store: AudienceStore;
  log: Logger;
  /** How often each live stream's current hour is rolled up (0: only after the stream ends). */
  rollupIntervalMs: number;
}

export interface AnalyticsIngest {
  /** Stores events now (TrackEvent), republishing them; resolves with what was stored. */
  recordNow(events: AnalyticsEventWire[]): Promise<RecordedAnalyticsEvent[]>;
  /** Resolves once every subscription routes (tests). */
  ready: Promise<void>;
  close(): Promise<void>;
}

export function startAnalyticsIngest(options: IngestOptions): AnalyticsIngest {
  const { sql, bus, jobs, store } = options;
  const log = options.log.child({ component: 'analytics-ingest' });
  let buffer: AnalyticsEventWire[] = [];
  let timer: NodeJS.Timeout | undefined;
  let flushing: Promise<void> = Promise.resolve();
  let closed = false;
  const roomStreams = new Map<number, number | null>();

  const publishRecorded = async (recorded: RecordedAnalyticsEvent[]) => {
    for (const event of recorded) {
      await bus.publish(analyticsRecordedSubject(event.stream_id ?? 0), event).catch((error: unknown) => {
        log.warn({ err: error }, 'could not republish a recorded analytics event');
      });
    }
  };

  const recordNow = async (events: AnalyticsEventWire[]) => {
    const recorded = await insertAudienceEvents(sql, events);
    await publishRecorded(recorded);
    return recorded;
  };

  const flush = () => {
    timer = undefined;
    const batch = buffer;
    buffer = [];
    flushing = flushing.then(async () => {
      if (batch.length === 0) return;
      try {
        await recordNow(batch);
      } catch (error) {
        dropped.inc({ reason: 'store_failed' }, batch.length);
        log.error({ err: error, events: batch.length }, 'could not store analytics events');
      }
    });
  };

  const enqueue = (event: AnalyticsEventWire) => {
    if (closed) return;
    received.inc({ type: event.type });
    buffer.push(event);
    if (buffer.length > BUFFER_MAX) {
      buffer.shift();
      dropped.inc({ reason: 'overflow' });
    }
    if (buffer.length >= FLUSH_MAX) {
      if (timer) clearTimeout(timer);
      flush();
    } else {
      timer ??= setTimeout(flush, FLUSH_MS);
    }
  };

  const streamOfRoom = async (roomId: number): Promise<number | null> => {
    if (roomStreams.has(roomId)) return roomStreams.get(roomId) ?? null;
    const [row] = await sql<
      { stream_id: number | null }[]
    >`select stream_id from chat_rooms where id = ${roomId}`;
    const streamId = row?.stream_id ?? null;
    if (roomStreams.size > 10_000) roomStreams.clear();
    roomStreams.set(roomId, streamId);
    return streamId;
  };

  const enqueueRollup = (job: RollupJob, tag: string) =>
    jobs.enqueue(ANALYTICS_ROLLUP_QUEUE, job, { jobId: rollupJobId(job, tag) }).catch((error: unknown) => {
      log.error({ err: error, job }, 'could not queue an analytics roll-up');
    });

  const subscriptions: Subscription[] = [
    bus.subscribe(ANALYTICS_EVENTS, (payload) => {
      const parsed = analyticsEventSchema.safeParse(payload);
      if (!parsed.success) {
        dropped.inc({ reason: 'malformed' });
        log.warn({ issue: parsed.error.issues[0]?.message }, 'dropped a malformed analytics event');
        return;
      }
      const event = parsed.data;
      // A report names its chat room (moderation knows no stream): counted on the room's stream.
      const roomId = Number(event.properties.room_id);
      if (
        event.type === 'chat.report' &&
        event.stream_id === null &&
        Number.isSafeInteger(roomId) &&
        roomId > 0
      ) {
        void streamOfRoom(roomId)
          .then((streamId) => {
            if (streamId !== null) enqueue({ ...event, stream_id: streamId });
          })
          .catch((error: unknown) => log.warn({ err: error }, 'could not count a report'));
        return;
      }
      enqueue(event);
    }),
    bus.subscribe(STREAM_STARTED, (payload) => {
      const parsed = streamStartedEventSchema.safeParse(payload);
      if (!parsed.success) return;
      const e = parsed.data;
      enqueue(
        analyticsEvent({
          type: 'stream.started',
          stream_id: e.stream_id,
          user_id: e.owner_id,
          occurred_at: new Date(e.started_at).toISOString(),
          dedupe_key: `stream.started:${e.stream_id}`,
        }),
      );
    }),
    bus.subscribe(STREAM_ENDED, (payload) => {
      const parsed = streamEndedEventSchema.safeParse(payload);
      if (!parsed.success) return;
      const e = parsed.data;
      enqueue(
        analyticsEvent({
          type: 'stream.ended',
          stream_id: e.stream_id,
          user_id: e.owner_id,
          properties: { reason: e.reason.slice(0, 1024) },
          occurred_at: new Date(e.ended_at).toISOString(),
          dedupe_key: `stream.ended:${e.stream_id}`,
        }),
      );
      // Every hour of the stream once more, now that its end is known (the job ids make it once
      // however many control planes heard the end).
      void (async () => {
        const stream = await store.stream(e.stream_id);
        if (!stream?.endedAt) return;
        for (let t = hourOf(stream.startedAt).getTime(); t <= stream.endedAt.getTime(); t += HOUR_MS) {
          await enqueueRollup({ stream_id: e.stream_id, hour: new Date(t).toISOString() }, 'final');
        }
      })().catch((error: unknown) => log.error({ err: error }, 'could not queue the final roll-ups'));
    }),
    bus.subscribe(ALL_ROOMS, (payload) => {
      const messages = parseRoomEvents(payload);
      if (!messages) return;
      for (const message of messages) {
        const m = message;
        if (m.eventType !== 'created') continue;
        void streamOfRoom(m.roomId)
          .then((streamId) => {
            if (streamId === null) return;
            enqueue(
              analyticsEvent({
                type: 'chat.message',
                stream_id: streamId,
                user_id: m.userId > 0 ? m.userId : null,
                occurred_at: (m.createdAt ?? new Date()).toISOString(),
                dedupe_key: `chat.message:${m.messageId}`,
              }),
            );
          })
          .catch((error: unknown) => log.warn({ err: error }, 'could not count a chat message'));
      }
    }),
    bus.subscribe('chat.state.*', (payload) => {
      const event = parseRoomStateEvent(payload);
      if (!event || (event.type !== 'banned' && event.type !== 'muted')) return;
      const at = new Date();
      void streamOfRoom(event.room_id)
        .then((streamId) => {
          if (streamId === null) return;
          enqueue(
            analyticsEvent({
              type: 'chat.moderation',
              stream_id: streamId,
              user_id: event.user_id,
              properties: { action: event.type },
              occurred_at: at.toISOString(),
              // Every control plane hears it within the same second.
              dedupe_key: `chat.moderation:${event.room_id}:${event.user_id}:${event.type}:${Math.floor(at.getTime() / 1000)}`,
            }),
          );
        })
        .catch((error: unknown) => log.warn({ err: error }, 'could not count a moderator action'));
    }),
    bus.respond(ANALYTICS_ROLLUP_READ, async (payload) => {
      const job = rollupJobSchema.parse(payload);
      // What the edges sent up to now must be stored before the hour is read.
      flush();
      await flushing;
      return store.rollupInput(job.stream_id, new Date(job.hour));
    }),
    bus.respond(ANALYTICS_ROLLUP_WRITE, async (payload) => {
      await store.writeRollup(rollupOutputSchema.parse(payload));
      return { ok: true };
    }),
  ];

  let scheduler: NodeJS.Timeout | undefined;
  if (options.rollupIntervalMs > 0) {
    const interval = options.rollupIntervalMs;
    scheduler = setInterval(() => {
      void (async () => {
        const now = Date.now();
        const slot = Math.floor(now / interval);
        const live = await sql<{ id: number }[]>`select id from streams where status = 'live'`;
        for (const { id } of live) {
          const hour = hourOf(new Date(now));
          await enqueueRollup({ stream_id: id, hour: hour.toISOString() }, `live${slot}`);
          // The hour just past, once more in the next hour's first interval.
          if (now - hour.getTime() < interval) {
            await enqueueRollup(
              { stream_id: id, hour: new Date(hour.getTime() - HOUR_MS).toISOString() },
              `live${slot}`,
            );
          }
        }
      })().catch((error: unknown) => log.error({ err: error }, 'could not queue the live roll-ups'));
    }, interval);
    scheduler.unref();
  }

  return {
    recordNow,
    ready: Promise.all(subscriptions.map((s) => s.ready)).then(() => undefined),
    async close() {
      closed = true;
      if (scheduler) clearInterval(scheduler);
      for (const subscription of subscriptions) subscription.unsubscribe();
      if (timer) clearTimeout(timer);
      flush();
      await flushing;
    },
  };
}
