/**
 * The REST gateway's analytics reads (GET /analytics/...), as the web app receives them. The
 * gateway builds them from AnalyticsService / StreamService answers; the browser parses them with
 * these schemas. Browser-safe: zod only.
 *
 * Routes (all need a signed-in owner of the stream, or an admin; others get 403 `forbidden`):
 * - GET /analytics/streams/:streamId/live    → LiveStreamFigures (current figures of a live stream)
 * - GET /analytics/streams/:streamId/summary → StreamSummary (?from&to ISO times, default: the stream's span)
 * - GET /analytics/streams/:streamId/series  → MetricSeriesSet (?metrics=a,b&from&to&step=seconds)
 * - GET /analytics/streams                   → PastStreams (the caller's streams, newest first, ?limit)
 */
import { z } from 'zod';

/** The named series GetMetrics and the series route know. */
export const ANALYTICS_METRIC_NAMES = [
  'listeners',
  'listening_minutes',
  'bitrate_kbps',
  'rtt_ms',
  'loss_pct',
  'chat_messages',
] as const;
export type AnalyticsMetricName = (typeof ANALYTICS_METRIC_NAMES)[number];

/** A country with a figure: ISO 3166-1 alpha-2 code ("ZZ" when the address is unknown). */
export const countryFigureSchema = z.object({
  country: z.string().regex(/^[A-Z]{2}$/),
  listeners: z.number().int().nonnegative(),
  minutes: z.number().nonnegative(),
});
export type CountryFigure = z.infer<typeof countryFigureSchema>;

export const liveStreamFiguresSchema = z.object({
  streamId: z.string(),
  live: z.boolean(),
  listeners: z.number().int().nonnegative(),
  listeningMinutes: z.number().nonnegative(),
  /** Mean received bitrate over current listeners, kbit/s; null when nobody listens. */
  bitrateKbps: z.number().nonnegative().nullable(),
  /** Mean round-trip time, ms; null when nobody listens. */
  rttMs: z.number().nonnegative().nullable(),
  lossPct: z.number().nonnegative().nullable(),
  /** Most listeners first. */
  countries: z.array(countryFigureSchema),
  at: z.string().datetime(),
});
export type LiveStreamFigures = z.infer<typeof liveStreamFiguresSchema>;

export const percentilesSchema = z.object({
  p50: z.number().nullable(),
  p95: z.number().nullable(),
  p99: z.number().nullable(),
});

export const streamSummarySchema = z.object({
  streamId: z.string(),
  title: z.string(),
  from: z.string().datetime(),
  to: z.string().datetime(),
  peakListeners: z.number().int().nonnegative(),
  averageListeners: z.number().nonnegative(),
  listeningMinutes: z.number().nonnegative(),
  uniqueListeners: z.number().int().nonnegative(),
  countries: z.array(countryFigureSchema),
  bitrateKbps: percentilesSchema,
  rttMs: percentilesSchema,
  lossPct: percentilesSchema,
  chatMessages: z.number().int().nonnegative(),
  reports: z.number().int().nonnegative(),
  moderatorActions: z.number().int().nonnegative(),
});
export type StreamSummary = z.infer<typeof streamSummarySchema>;

export const metricPointSchema = z.object({ t: z.string().datetime(), v: z.number() });
export const metricSeriesSchema = z.object({
  name: z.enum(ANALYTICS_METRIC_NAMES),
  stepSeconds: z.number().int().positive(),
  points: z.array(metricPointSchema),
});
export const metricSeriesSetSchema = z.object({
  streamId: z.string(),
  series: z.array(metricSeriesSchema),
});
export type MetricSeries = z.infer<typeof metricSeriesSchema>;
export type MetricSeriesSet = z.infer<typeof metricSeriesSetSchema>;

export const pastStreamSchema = z.object({
  streamId: z.string(),
  title: z.string(),
  startedAt: z.string().datetime().nullable(),
  endedAt: z.string().datetime().nullable(),
  peakListeners: z.number().int().nonnegative(),
  listeningMinutes: z.number().nonnegative(),
});
export const pastStreamsSchema = z.object({ streams: z.array(pastStreamSchema) });
export type PastStream = z.infer<typeof pastStreamSchema>;
