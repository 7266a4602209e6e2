/**
 * The analytics reads of the REST gateway (GET /analytics/...), parsed with the shared contract
 * (common/contracts/analytics-rest.ts) the gateway builds its answers from: both sides fail on
 * the same shape. These pages are their own chunks, so the full zod they need stays out of the
 * other pages.
 */
import {
  type AnalyticsMetricName,
  type LiveStreamFigures,
  liveStreamFiguresSchema,
  type MetricSeriesSet,
  metricSeriesSetSchema,
  type PastStream,
  pastStreamsSchema,
  type StreamSummary,
  streamSummarySchema,
} from '../../../common/contracts/browser.js';
import { request } from '../api.js';

const base = (streamId: string) => `/analytics/streams/${encodeURIComponent(streamId)}`;

export const analyticsApi = {
  live: (token: string, streamId: string): Promise<LiveStreamFigures> =>
    request('GET', `${base(streamId)}/live`, { token, schema: liveStreamFiguresSchema }),
  summary: (token: string, streamId: string): Promise<StreamSummary> =>
    request('GET', `${base(streamId)}/summary`, { token, schema: streamSummarySchema }),
  series: (
    token: string,
    streamId: string,
    query: { metrics: readonly AnalyticsMetricName[]; from: string; to: string; stepSeconds: number },
  ): Promise<MetricSeriesSet> => {
    const params = new URLSearchParams({
      metrics: query.metrics.join(','),
      from: query.from,
      to: query.to,
      step: String(query.stepSeconds),
    });
    return request('GET', `${base(streamId)}/series?${params}`, { token, schema: metricSeriesSetSchema });
  },
  pastStreams: async (token: string, limit = 50): Promise<PastStream[]> =>
    (await request('GET', `/analytics/streams?limit=${limit}`, { token, schema: pastStreamsSchema })).streams,
};

/** A step that gives about `points` points over the range, in whole minutes (the roll-up's grain). */
export function stepFor(fromIso: string, toIso: string, points = 120): number {
  const seconds = Math.max(60, (Date.parse(toIso) - Date.parse(fromIso)) / 1000);
  return Math.max(60, Math.ceil(seconds / points / 60) * 60);
}

/** "DE" → "Germany" in the reader's language; the code itself when the browser does not know it. */
export function countryName(code: string): string {
  if (code === 'ZZ') return 'Unknown';
  try {
    return new Intl.DisplayNames([], { type: 'region' }).of(code) ?? code;
  } catch {
    return code;
  }
}

export function formatMinutes(minutes: number): string {
  if (minutes < 60) return `${Number(minutes.toFixed(1))} min`;
  const hours = Math.floor(minutes / 60);
  return `${hours} h ${Math.round(minutes - hours * 60)} min`;
}

export const orDash = (value: number | null, unit: string, digits = 0): string =>
  value === null ? '—' : `${value.toFixed(digits)} ${unit}`;
