/**
 * veza.analytics.AnalyticsService, and StreamService.StreamAnalytics (bound into the stream
 * service by control-plane/index.ts).
 *
 * Who may do what:
 * - TrackEvent: a signed-in user records the client event types (CLIENT_EVENT_TYPES) about
 *   themselves (user_id 0 or their own id); a service caller (API key, no user token) records any
 *   type of the closed list, about any user or none.
 * - GetAnalytics: a user reads their own events, and the audience of their own streams, tracks and
 *   channel; admins and service callers read everything.
 * - GetMetrics, StreamMetrics, StreamEvents, StreamAnalytics: one stream's, for its owner, admins
 *   and services (StreamEvents of every stream: admins and services only).
 */
import { z } from 'zod';
import {
  ALL_ANALYTICS_RECORDED,
  ANALYTICS_EVENT_TYPES,
  ANALYTICS_METRIC_NAMES,
  type AnalyticsEventType,
  type AnalyticsMetricName,
  analyticsEvent,
  analyticsRecordedSubject,
  CLIENT_EVENT_TYPES,
  PermissionDeniedError,
  RateLimitedError,
  type RecordedAnalyticsEvent,
  recordedAnalyticsEventSchema,
} from '../../common/contracts/index.js';
import type { Config } from '../../common/index.js';
import type { EventBus } from '../../common/ports/index.js';
import {
  AnalyticsServiceService,
  type EventData,
  type GetAnalyticsResponse,
  type MetricData,
  type Percentiles as ProtoPercentiles,
} from '../../proto/gen/veza/analytics/analytics.js';
import type { StreamServiceService } from '../../proto/gen/veza/stream/stream.js';
import {
  bindService,
  type CallContext,
  type ServiceBinding,
  type ServiceImplementation,
} from '../grpc/index.js';
import { parseInput } from '../parse-input.js';
import { checkRange, checkStep, readableStream, readsEverything } from './access.js';
import type { AudienceStore, LiveFigures, Percentiles, StreamRecord } from './audience-store.js';
import type { AnalyticsIngest } from './ingest.js';
import { DEFAULT_INTERVAL_S, MAX_INTERVAL_S, whileLive } from './live.js';
import type { Analytics, AnalyticsEvent } from './store.js';

export const EVENT_TYPE = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
export const MAX_PROPERTIES = 50;
const PROPERTY_KEY_MAX = 64;
const PROPERTY_VALUE_MAX = 1024;
/** Clocks drift; an event from further in the future than this is a client bug. */
const FUTURE_SKEW_MS = 5 * 60 * 1000;
/** The newest events GetAnalytics returns; total and counts_by_type cover every match. */
export const EVENTS_LIMIT = 100;
/** A channel's audience covers at most this many of its newest streams. */
const CHANNEL_STREAMS_MAX = 1000;
/** A channel's answer lists this many of its newest streams with their own figures. */
const CHANNEL_STREAMS_LISTED = 100;
/** Bytes a live stream may hold unread before the call is dropped. */
const STREAM_BUFFER_LIMIT = 1024 * 1024;
const DAY_MS = 86_400_000;

const knownEventType = z.enum(ANALYTICS_EVENT_TYPES, {
  error: (issue) =>
    `event_type ${JSON.stringify(issue.input)} is not one of the known event types: ${ANALYTICS_EVENT_TYPES.join(', ')}`,
});
const id = (field: string) => z.number().int().min(0, `${field} must not be negative`);

const trackEventSchema = z.object({
  eventType: knownEventType,
  userId: id('user_id'),
  streamId: id('stream_id'),
  trackId: id('track_id'),
  properties: z
    .record(
      z
        .string()
        .min(1, 'property names must not be empty')
        .max(PROPERTY_KEY_MAX, `property names are at most ${PROPERTY_KEY_MAX} characters`),
      z.string().max(PROPERTY_VALUE_MAX, `property values are at most ${PROPERTY_VALUE_MAX} characters`),
    )
    .refine((value) => Object.keys(value).length <= MAX_PROPERTIES, `at most ${MAX_PROPERTIES} properties`),
  timestamp: z
    .date()
    .optional()
    .refine(
      (value) => !value || value.getTime() <= Date.now() + FUTURE_SKEW_MS,
      'timestamp is in the future',
    ),
});

const getAnalyticsSchema = z
  .object({
    eventType: z.union([z.literal(''), knownEventType]),
    userId: id('user_id'),
    from: z.date().optional(),
    to: z.date().optional(),
    streamId: id('stream_id'),
    trackId: id('track_id'),
    channel: z.boolean(),
  })
  .refine((value) => !value.from || !value.to || value.from < value.to, {
    message: 'from must be before to',
    path: ['from'],
  })
  .refine((value) => [value.streamId > 0, value.trackId > 0, value.channel].filter(Boolean).length <= 1, {
    message: 'name at most one of stream_id, track_id and channel',
    path: ['streamId'],
  });

const metricNames = z
  .array(
    z.enum(ANALYTICS_METRIC_NAMES, {
      error: (issue) =>
        `unknown metric ${JSON.stringify(issue.input)}: the metrics are ${ANALYTICS_METRIC_NAMES.join(', ')}`,
    }),
  )
  .max(ANALYTICS_METRIC_NAMES.length * 2);

const getMetricsSchema = z.object({
  names: metricNames,
  streamId: z.number().int().positive('stream_id is required'),
  from: z.date().optional(),
  to: z.date().optional(),
  stepSeconds: z.number().int().min(0, 'step_seconds must not be negative'),
});

const intervalSeconds = z
  .number()
  .int()
  .min(0, 'interval_seconds must not be negative')
  .max(MAX_INTERVAL_S, `interval_seconds is at most ${MAX_INTERVAL_S}`);

const streamMetricsSchema = z.object({
  names: metricNames,
  intervalSeconds,
  streamId: z.number().int().positive('stream_id is required'),
});

const streamEventsSchema = z.object({
  eventType: z.union([z.literal(''), knownEventType]),
  streamId: id('stream_id'),
});

export const streamAnalyticsSchema = z.object({
  streamId: z.number().int().positive('stream_id is required'),
  intervalSeconds,
});

const actsAsService = (ctx: CallContext): boolean => ctx.service && !ctx.user;

export function toEventData(event: AnalyticsEvent): EventData {
  return {
    eventId: event.id,
    eventType: event.eventType,
    userId: event.userId ?? 0,
    properties: event.properties,
    timestamp: event.occurredAt,
  };
}

/** A recorded audience event as EventData: its stream, session, country and numbers become properties. */
function recordedToEventData(event: RecordedAnalyticsEvent): EventData {
  const properties: Record<string, string> = { ...event.properties };
  if (event.stream_id) properties.stream_id = String(event.stream_id);
  if (event.track_id) properties.track_id = String(event.track_id);
  if (event.session_id) properties.session_id = event.session_id;
  if (event.anon_id) properties.anon_id = event.anon_id;
  if (event.country) properties.country = event.country;
  for (const [key, value] of Object.entries(event.values)) {
    if (typeof value === 'number') properties[key] = String(value);
  }
  return {
    eventId: event.id,
    eventType: event.type,
    userId: event.user_id ?? 0,
    properties,
    timestamp: new Date(event.occurred_at),
  };
}

/** A GetAnalyticsResponse with no audience figures (an events-only query fills only the seed's fields). */
function eventsOnly(
  total: number,
  countsByType: Record<string, number>,
  events: EventData[],
): GetAnalyticsResponse {
  return {
    total,
    countsByType,
    events,
    peakListeners: 0,
    averageListeners: 0,
    listeningMinutes: 0,
    uniqueListeners: 0,
    countries: [],
    bitrateKbps: undefined,
    rttMs: undefined,
    lossPct: undefined,
    chatMessages: 0,
    reports: 0,
    moderatorActions: 0,
    trackPlays: 0,
    trackCompletions: 0,
    streams: [],
  };
}

const toProtoPercentiles = (p: Percentiles): ProtoPercentiles => ({
  hasValues: p.p50 !== null,
  p50: p.p50 ?? 0,
  p95: p.p95 ?? 0,
  p99: p.p99 ?? 0,
});

/** The current value of a metric for StreamMetrics. */
function liveValue(name: AnalyticsMetricName, live: LiveFigures, chatMessages: number): number {
  switch (name) {
    case 'listeners':
      return live.listeners;
    case 'listening_minutes':
      return live.listeningMinutes;
    case 'bitrate_kbps':
      return live.bitrateKbps ?? 0;
    case 'rtt_ms':
      return live.rttMs ?? 0;
    case 'loss_pct':
      return live.lossPct ?? 0;
    case 'chat_messages':
      return chatMessages;
  }
}

export interface AnalyticsServiceDeps {
  analytics: Analytics;
  audience: AudienceStore;
  ingest: AnalyticsIngest;
  bus: EventBus;
  config: Pick<Config, 'ANALYTICS_MAX_RANGE_DAYS' | 'ANALYTICS_SAMPLE_S'>;
}

/** Writes to a server stream, failing the call when the client stops reading. */
function bufferedWriter<T>(stream: { write(value: T): boolean; writableLength: number }): (value: T) => void {
  return (value) => {
    stream.write(value);
    if (stream.writableLength > STREAM_BUFFER_LIMIT) {
      throw new RateLimitedError('analytics stream dropped: the client is not reading fast enough', 1000);
    }
  };
}

export function createAnalyticsService(deps: AnalyticsServiceDeps): ServiceBinding {
  const { analytics, audience, ingest, bus, config } = deps;
  const maxDays = config.ANALYTICS_MAX_RANGE_DAYS;
  // The live figures' quality: the samples of the last two sampling intervals (and a little).
  const sampleWindowMs = config.ANALYTICS_SAMPLE_S * 2500;

  return bindService(AnalyticsServiceService, {
    trackEvent: {
      policy: 'jwt-or-api-key',
      handler: async (request, ctx) => {
        const input = parseInput(trackEventSchema, request);
        let subject: number | null = input.userId === 0 ? null : input.userId;
        if (!actsAsService(ctx)) {
          const self = ctx.user?.userId;
          if (!self)
            throw new PermissionDeniedError('recording an event needs a signed-in user or a service key');
          if (subject !== null && subject !== self) {
            throw new PermissionDeniedError('a user may only record events about themselves');
          }
          if (!CLIENT_EVENT_TYPES.includes(input.eventType)) {
            throw new PermissionDeniedError(
              `event_type ${input.eventType} is recorded by the platform itself; clients record ${CLIENT_EVENT_TYPES.join(', ')}`,
            );
          }
          subject = self;
        }
        const [recorded] = await ingest.recordNow([
          analyticsEvent({
            type: input.eventType,
            user_id: subject,
            stream_id: input.streamId || null,
            track_id: input.trackId || null,
            properties: input.properties,
            occurred_at: (input.timestamp ?? new Date()).toISOString(),
          }),
        ]);
        return { success: true, eventId: recorded?.id ?? 0 };
      },
    },

    getAnalytics: {
      policy: 'jwt-or-api-key',
      handler: async (request, ctx) => {
        const input = parseInput(getAnalyticsSchema, request);
        let subject: number | null = input.userId === 0 ? null : input.userId;
        const seesAll = readsEverything(ctx);
        if (!seesAll) {
          const self = ctx.user?.userId;
          if (!self)
            throw new PermissionDeniedError('reading analytics needs a signed-in user or a service key');
          if (subject !== null && subject !== self) {
            throw new PermissionDeniedError("only admins may read other users' analytics");
          }
          subject = self;
        }
        const eventType = (input.eventType || null) as AnalyticsEventType | null;
        if (input.streamId === 0 && input.trackId === 0 && !input.channel) {
          const summary = await analytics.query({
            eventType,
            userId: subject,
            from: input.from ?? null,
            to: input.to ?? null,
            limit: EVENTS_LIMIT,
          });
          return eventsOnly(summary.total, summary.countsByType, summary.events.map(toEventData));
        }

        let streamIds: number[] = [];
        let channelStreams: StreamRecord[] = [];
        let range: { from: Date; to: Date };
        const now = new Date();
        if (input.streamId > 0) {
          const stream = await readableStream(audience, ctx, input.streamId);
          streamIds = [stream.id];
          range = { from: input.from ?? stream.startedAt, to: input.to ?? stream.endedAt ?? now };
        } else if (input.trackId > 0) {
          const owner = await audience.trackOwner(input.trackId);
          if (owner === null || (!seesAll && owner !== ctx.user?.userId)) {
            throw new PermissionDeniedError(
              `only the owner of track ${input.trackId} or an admin may read its analytics`,
            );
          }
          range = { from: input.from ?? new Date(0), to: input.to ?? now };
          if (!input.from) range.from = new Date(range.to.getTime() - maxDays * DAY_MS);
        } else {
          const owner = subject ?? ctx.user?.userId ?? null;
          if (owner === null) throw new PermissionDeniedError('a service names the channel with user_id');
          channelStreams = await audience.streams(owner, CHANNEL_STREAMS_MAX);
          streamIds = channelStreams.map((s) => s.id);
          range = { from: input.from ?? new Date(now.getTime() - 30 * DAY_MS), to: input.to ?? now };
        }
        checkRange(range, maxDays);
        // A stream's own events are counted whole unless a range is asked for: its last leaves
        // arrive just after its end.
        const events = await analytics.query({
          eventType,
          userId: null,
          from: input.streamId > 0 ? (input.from ?? null) : range.from,
          to: input.streamId > 0 ? (input.to ?? null) : range.to,
          limit: EVENTS_LIMIT,
          streamIds: input.trackId > 0 ? null : streamIds.length > 0 ? streamIds : [0],
          trackId: input.trackId || null,
        });
        const response = eventsOnly(events.total, events.countsByType, events.events.map(toEventData));
        if (input.trackId > 0) {
          const counts = await audience.trackCounts([input.trackId], range.from, range.to);
          response.trackPlays = counts.plays;
          response.trackCompletions = counts.completions;
          return response;
        }
        if (streamIds.length === 0) return response;
        const summary = await audience.summary(streamIds, range.from, range.to);
        const listed = channelStreams.slice(0, CHANNEL_STREAMS_LISTED);
        const figures = listed.length > 0 ? await audience.perStream(listed.map((s) => s.id)) : new Map();
        return {
          ...response,
          streams: listed.map((s) => ({
            streamId: s.id,
            title: s.title,
            startedAt: s.startedAt,
            endedAt: s.endedAt ?? undefined,
            peakListeners: figures.get(s.id)?.peak ?? 0,
            listeningMinutes: figures.get(s.id)?.minutes ?? 0,
          })),
          peakListeners: summary.peakListeners,
          averageListeners: summary.averageListeners,
          listeningMinutes: summary.listeningMinutes,
          uniqueListeners: summary.uniqueListeners,
          countries: summary.countries,
          bitrateKbps: toProtoPercentiles(summary.quality.bitrate_kbps),
          rttMs: toProtoPercentiles(summary.quality.rtt_ms),
          lossPct: toProtoPercentiles(summary.quality.loss_pct),
          chatMessages: summary.chatMessages,
          reports: summary.reports,
          moderatorActions: summary.moderatorActions,
        };
      },
    },

    getMetrics: {
      policy: 'jwt-or-api-key',
      handler: async (request, ctx) => {
        const input = parseInput(getMetricsSchema, request);
        const stream = await readableStream(audience, ctx, input.streamId);
        const range = checkRange(
          { from: input.from ?? stream.startedAt, to: input.to ?? stream.endedAt ?? new Date() },
          maxDays,
        );
        const step = checkStep(range, input.stepSeconds);
        const names = input.names.length > 0 ? [...new Set(input.names)] : [...ANALYTICS_METRIC_NAMES];
        const metrics: MetricData[] = [];
        for (const name of names) {
          const points = await audience.series(stream.id, name, range.from, range.to, step * 1000);
          for (const point of points) {
            metrics.push({
              name,
              value: point.v,
              labels: { stream_id: String(stream.id), step_seconds: String(step) },
              timestamp: point.t,
            });
          }
        }
        return { metrics };
      },
    },

    streamMetrics: {
      policy: 'jwt-or-api-key',
      handler: async (request, stream, ctx) => {
        const input = parseInput(streamMetricsSchema, request);
        const target = await readableStream(audience, ctx, input.streamId);
        const names = input.names.length > 0 ? [...new Set(input.names)] : [...ANALYTICS_METRIC_NAMES];
        const write = bufferedWriter(stream);
        await whileLive({
          bus,
          streamId: target.id,
          intervalMs: (input.intervalSeconds || DEFAULT_INTERVAL_S) * 1000,
          signal: ctx.signal,
          tick: async () => {
            const live = await audience.live(target.id, sampleWindowMs);
            const chat = names.includes('chat_messages') ? await audience.chatCount(target.id) : 0;
            const labels = { stream_id: String(target.id), live: String(live.live) };
            for (const name of names) {
              // Listeners and minutes also per country currently listening (most listeners first),
              // before the total, which closes the name's figures for this tick.
              if (name === 'listeners' || name === 'listening_minutes') {
                for (const c of live.countries) {
                  write({
                    name,
                    value: name === 'listeners' ? c.listeners : c.minutes,
                    labels: { ...labels, country: c.country },
                    timestamp: live.at,
                  });
                }
              }
              write({ name, value: liveValue(name, live, chat), labels, timestamp: live.at });
            }
            return live.live;
          },
        });
      },
    },

    streamEvents: {
      policy: 'jwt-or-api-key',
      handler: async (request, stream, ctx) => {
        const input = parseInput(streamEventsSchema, request);
        if (input.streamId > 0) await readableStream(audience, ctx, input.streamId);
        else if (!readsEverything(ctx)) {
          throw new PermissionDeniedError('only admins and services may follow every stream: name stream_id');
        }
        const write = bufferedWriter(stream);
        let fail: (error: unknown) => void = () => {};
        const done = new Promise<void>((resolve, reject) => {
          fail = reject;
          if (ctx.signal.aborted) resolve();
          ctx.signal.addEventListener('abort', () => resolve(), { once: true });
        });
        const subject =
          input.streamId > 0 ? analyticsRecordedSubject(input.streamId) : ALL_ANALYTICS_RECORDED;
        const subscription = bus.subscribe(subject, (payload) => {
          const parsed = recordedAnalyticsEventSchema.safeParse(payload);
          if (!parsed.success) return;
          if (input.eventType && parsed.data.type !== input.eventType) return;
          try {
            write(recordedToEventData(parsed.data));
          } catch (error) {
            fail(error);
          }
        });
        try {
          await subscription.ready;
          await done;
        } finally {
          subscription.unsubscribe();
        }
      },
    },
  });
}

/** StreamService.StreamAnalytics: the seed's AnalyticsData, live. */
export function createStreamAnalyticsRpc(
  deps: Pick<AnalyticsServiceDeps, 'audience' | 'bus' | 'config'>,
): ServiceImplementation<typeof StreamServiceService> {
  const { audience, bus, config } = deps;
  const sampleWindowMs = config.ANALYTICS_SAMPLE_S * 2500;
  return {
    streamAnalytics: {
      policy: 'jwt-or-api-key',
      handler: async (request, stream, ctx) => {
        const input = parseInput(streamAnalyticsSchema, request);
        const target = await readableStream(audience, ctx, input.streamId);
        const write = bufferedWriter(stream);
        await whileLive({
          bus,
          streamId: target.id,
          intervalMs: (input.intervalSeconds || DEFAULT_INTERVAL_S) * 1000,
          signal: ctx.signal,
          tick: async () => {
            const live = await audience.live(target.id, sampleWindowMs);
            write({
              streamId: target.id,
              listeners: live.listeners,
              bitrate: live.bitrateKbps ?? 0,
              latency: live.rttMs ?? 0,
              countries: live.countries.map((c) => c.country),
              timestamp: live.at,
            });
            return live.live;
          },
        });
      },
    },
  };
}
