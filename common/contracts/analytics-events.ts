/**
 * Audience analytics between the roles. Events are published where they happen (the edge: listener
 * and broadcaster sessions, their delivery quality sampled from the media node's stats; the control
 * plane: stream lifecycle, chat activity, uploads, TrackEvent) on `analytics.events`, and recorded
 * by the control plane's analytics store, which republishes each stored event on
 * `analytics.recorded.<streamId>` for the live rpcs. The worker role rolls the raw events up per
 * stream per minute through the durable `analytics-rollup` job, reading and writing through the
 * analytics module (request/reply on `analytics.rollup.<method>`): only that module touches the
 * analytics tables.
 *
 * Snake_case JSON; every receiver parses it with these schemas.
 */
import { z } from 'zod';

/**
 * The closed list of event types. `CLIENT_EVENT_TYPES` are those a signed-in user may record about
 * themselves through TrackEvent; a service (API key) may record any of them.
 */
export const ANALYTICS_EVENT_TYPES = [
  'stream.started',
  'stream.ended',
  'broadcaster.connected',
  'broadcaster.disconnected',
  'listener.joined',
  'listener.left',
  'quality.listener',
  'quality.broadcaster',
  'chat.message',
  'chat.report',
  'chat.moderation',
  'player.play',
  'player.progress',
  'player.complete',
  'track.uploaded',
  'page.view',
] as const;
export type AnalyticsEventType = (typeof ANALYTICS_EVENT_TYPES)[number];
export const CLIENT_EVENT_TYPES: readonly AnalyticsEventType[] = [
  'player.play',
  'player.progress',
  'player.complete',
  'page.view',
];

export const ANALYTICS_EVENTS = 'analytics.events';
export const analyticsRecordedSubject = (streamId: number): string => `analytics.recorded.${streamId}`;
/** Stored events that concern no stream go out on `analytics.recorded.0`. */
export const ALL_ANALYTICS_RECORDED = 'analytics.recorded.*';

const countryCode = z.string().regex(/^[A-Z]{2}$/, 'country must be an ISO 3166-1 alpha-2 code');

/** The numbers an event may carry; units are in the names. */
export const analyticsValuesSchema = z
  .object({
    duration_ms: z.number().nonnegative(),
    bitrate_kbps: z.number().nonnegative(),
    rtt_ms: z.number().nonnegative(),
    loss_pct: z.number().min(0).max(100),
    jitter_ms: z.number().nonnegative(),
  })
  .partial();
export type AnalyticsValues = z.infer<typeof analyticsValuesSchema>;

export const analyticsEventSchema = z.object({
  type: z.enum(ANALYTICS_EVENT_TYPES),
  stream_id: z.number().int().positive().nullable(),
  track_id: z.number().int().positive().nullable(),
  /** The signed-in user it is about, or null. */
  user_id: z.number().int().positive().nullable(),
  /** Listener and broadcaster sessions: one media session (the edge's peer id). */
  session_id: z.string().min(1).max(200).nullable(),
  /** An anonymous listener's id, the same across one listener token's connections to one stream. */
  anon_id: z
    .string()
    .regex(/^[a-f0-9]{16,64}$/)
    .nullable(),
  /** From the client's address by the offline GeoIP database; the address itself is never sent. */
  country: countryCode.nullable(),
  values: analyticsValuesSchema,
  properties: z.record(z.string().max(64), z.string().max(1024)),
  occurred_at: z.string().datetime(),
  /**
   * Recording an event twice with one key stores it once: every control plane hears the bus, and
   * a publisher may retry.
   */
  dedupe_key: z.string().min(1).max(200).nullable(),
});
export type AnalyticsEventWire = z.infer<typeof analyticsEventSchema>;

/** A stored event as `analytics.recorded.<streamId>` carries it. */
export const recordedAnalyticsEventSchema = analyticsEventSchema.extend({
  id: z.number().int().positive(),
});
export type RecordedAnalyticsEvent = z.infer<typeof recordedAnalyticsEventSchema>;

/** An event with its optional parts defaulted. */
export function analyticsEvent(
  event: Pick<AnalyticsEventWire, 'type'> & Partial<AnalyticsEventWire>,
): AnalyticsEventWire {
  return analyticsEventSchema.parse({
    stream_id: null,
    track_id: null,
    user_id: null,
    session_id: null,
    anon_id: null,
    country: null,
    values: {},
    properties: {},
    occurred_at: new Date().toISOString(),
    dedupe_key: null,
    ...event,
  });
}

// The roll-up job and the worker's calls.

export const ANALYTICS_ROLLUP_QUEUE = 'analytics-rollup';

/** Rolls up one hour of one stream (replacing what an earlier run of the same hour wrote). */
export const rollupJobSchema = z.object({
  stream_id: z.number().int().positive(),
  hour: z.string().datetime(),
});
export type RollupJob = z.infer<typeof rollupJobSchema>;

export function hourOf(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 3_600_000) * 3_600_000);
}

/**
 * The job id names the stream, the hour and a tag: a live stream's hour is rolled up again each
 * interval (tag: the interval's number), and once more, finally, after the stream ended.
 */
export function rollupJobId(job: RollupJob, tag: string): string {
  return `analytics.${job.stream_id}.${Date.parse(job.hour) / 1000}.${tag}`;
}

export const ANALYTICS_ROLLUP_READ = 'analytics.rollup.read';
export const ANALYTICS_ROLLUP_WRITE = 'analytics.rollup.write';

/**
 * Quality samples are rolled up as histograms with these bucket edges (upper bounds, the last
 * bucket open), so percentiles over any range come from summing a few arrays.
 */
export const QUALITY_BUCKETS = {
  bitrate_kbps: Array.from({ length: 64 }, (_, i) => (i + 1) * 4),
  rtt_ms: [
    0.25, 0.5, 1, 2, 3, 5, 7, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 125, 150, 200, 250, 300, 400, 500, 750,
    1000, 1500, 2000, 3000, 5000,
  ],
  loss_pct: [0, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100],
} as const;
export type QualityMetric = keyof typeof QUALITY_BUCKETS;
export const QUALITY_METRICS = Object.keys(QUALITY_BUCKETS) as QualityMetric[];

const histogramSchema = z.array(z.number().int().nonnegative());
const minuteQualitySchema = z.object({
  minute: z.string().datetime(),
  /** Per metric: sum and count of the samples, and the histogram over QUALITY_BUCKETS (+1 overflow). */
  quality: z.partialRecord(
    z.enum(['bitrate_kbps', 'rtt_ms', 'loss_pct']),
    z.object({ sum: z.number(), n: z.number().int().nonnegative(), histogram: histogramSchema }),
  ),
});
const minuteCountsSchema = z.object({
  minute: z.string().datetime(),
  chat_messages: z.number().int().nonnegative(),
  reports: z.number().int().nonnegative(),
  moderator_actions: z.number().int().nonnegative(),
});

export const rollupSessionSchema = z.object({
  session_id: z.string(),
  /** `u:<userId>` or `a:<anonId>` (one listener, whichever connection they used). */
  listener_key: z.string(),
  country: z.string(),
  joined_at: z.string().datetime(),
  /** null while the session is open. */
  left_at: z.string().datetime().nullable(),
});
export type RollupSession = z.infer<typeof rollupSessionSchema>;

/** What the worker reads for one stream's hour. */
export const rollupInputSchema = z.object({
  stream_id: z.number().int().positive(),
  hour: z.string().datetime(),
  started_at: z.string().datetime(),
  /** When the stream ended (open sessions end there), or null while live. */
  ended_at: z.string().datetime().nullable(),
  /** The reader's clock: open sessions of a live stream count until then. */
  now: z.string().datetime(),
  /** The listener sessions overlapping the hour. */
  sessions: z.array(rollupSessionSchema),
  quality: z.array(minuteQualitySchema),
  counts: z.array(minuteCountsSchema),
});
export type RollupInput = z.infer<typeof rollupInputSchema>;

export const rollupMinuteSchema = z.object({
  minute: z.string().datetime(),
  peak_listeners: z.number().int().nonnegative(),
  listener_seconds: z.number().nonnegative(),
  quality: minuteQualitySchema.shape.quality,
  chat_messages: z.number().int().nonnegative(),
  reports: z.number().int().nonnegative(),
  moderator_actions: z.number().int().nonnegative(),
  /** Listening seconds per country in this minute. */
  countries: z.record(z.string(), z.number().nonnegative()),
});
export type RollupMinute = z.infer<typeof rollupMinuteSchema>;

/** What the worker writes for one stream's hour: it replaces every roll-up row of that hour. */
export const rollupOutputSchema = z.object({
  stream_id: z.number().int().positive(),
  hour: z.string().datetime(),
  minutes: z.array(rollupMinuteSchema),
  /** Each listener heard in the hour, with their country and listening seconds in it. */
  listeners: z.array(
    z.object({ listener_key: z.string(), country: z.string(), seconds: z.number().nonnegative() }),
  ),
  /** True for the run after the stream ended. */
  final: z.boolean(),
});
export type RollupOutput = z.infer<typeof rollupOutputSchema>;
