/**
 * The web app's analytics reads (common/contracts/analytics-rest.ts), each a translation of
 * AnalyticsService / StreamService answers made with the caller's token, so the control plane
 * decides who may read what (owners their own streams, admins everything) and its errors pass
 * through with their status and field.
 */

import type { z } from 'zod';
import {
  ANALYTICS_METRIC_NAMES,
  type AnalyticsMetricName,
  type CountryFigure,
  InvalidArgumentError,
  type LiveStreamFigures,
  type MetricSeriesSet,
  type pastStreamsSchema,
  type StreamSummary,
} from '../../../common/contracts/index.js';
import type { Percentiles } from '../../../proto/gen/veza/analytics/analytics.js';
import type { EdgeRequest } from '../context.js';
import { json } from '../reply.js';
import type { RouteRegistrar } from '../server.js';
import { callContext, type RouteDeps, requireBearer } from './shared.js';

const NO_STORE = { 'cache-control': 'no-store' };
/** The live route reads one tick of StreamMetrics; a live stream answers within a second. */
const LIVE_TIMEOUT_MS = 10_000;

function streamIdParam(request: EdgeRequest): number {
  const raw = request.params.streamId ?? '';
  const id = Number(raw);
  if (!/^[1-9]\d*$/.test(raw) || !Number.isSafeInteger(id)) {
    throw new InvalidArgumentError(
      `invalid path parameter "streamId": "${raw}" is not a stream id`,
      'streamId',
    );
  }
  return id;
}

function timeParam(request: EdgeRequest, name: 'from' | 'to'): Date | undefined {
  const raw = request.query.get(name);
  if (raw === null || raw === '') return undefined;
  const time = new Date(raw);
  if (Number.isNaN(time.getTime()) || !/^\d{4}-\d{2}-\d{2}T/.test(raw)) {
    throw new InvalidArgumentError(
      `invalid query parameter "${name}": "${raw}" is not an ISO 8601 time`,
      name,
    );
  }
  return time;
}

function intParam(request: EdgeRequest, name: string, min: number, max: number): number | undefined {
  const raw = request.query.get(name);
  if (raw === null || raw === '') return undefined;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    throw new InvalidArgumentError(
      `invalid query parameter "${name}": "${raw}" is not a number from ${min} to ${max}`,
      name,
    );
  }
  return value;
}

function metricsParam(request: EdgeRequest): AnalyticsMetricName[] {
  const raw = request.query.get('metrics');
  if (raw === null || raw === '') return [...ANALYTICS_METRIC_NAMES];
  const names = raw.split(',').map((name) => name.trim());
  for (const name of names) {
    if (!(ANALYTICS_METRIC_NAMES as readonly string[]).includes(name)) {
      throw new InvalidArgumentError(
        `invalid query parameter "metrics": unknown metric "${name}"; the metrics are ${ANALYTICS_METRIC_NAMES.join(', ')}`,
        'metrics',
      );
    }
  }
  return [...new Set(names)] as AnalyticsMetricName[];
}

const percentiles = (p: Percentiles | undefined) =>
  p?.hasValues ? { p50: p.p50, p95: p.p95, p99: p.p99 } : { p50: null, p95: null, p99: null };

export function registerAnalyticsRoutes(routes: RouteRegistrar, deps: Pick<RouteDeps, 'controlPlane'>): void {
  const { analytics, stream } = deps.controlPlane;

  routes.route('GET', '/analytics/streams/:streamId/live', async (request) => {
    const token = requireBearer(request);
    const streamId = streamIdParam(request);
    const names = [...ANALYTICS_METRIC_NAMES];
    const last = names[names.length - 1];
    const timeout = AbortSignal.timeout(LIVE_TIMEOUT_MS);
    const call = analytics.streamMetrics(
      { names, intervalSeconds: 0, streamId },
      { ...callContext(request, token), signal: AbortSignal.any([request.signal, timeout]) },
    );
    const totals = new Map<string, number>();
    const countries = new Map<string, CountryFigure>();
    let live = false;
    let at = new Date();
    try {
      // One tick: per-country figures, then each name's total; the last name's total closes it.
      for await (const metric of call) {
        const country = metric.labels.country;
        if (country) {
          const figure = countries.get(country) ?? { country, listeners: 0, minutes: 0 };
          if (metric.name === 'listeners') figure.listeners = metric.value;
          else figure.minutes = metric.value;
          countries.set(country, figure);
          continue;
        }
        totals.set(metric.name, metric.value);
        live = metric.labels.live === 'true';
        at = metric.timestamp ?? at;
        if (metric.name === last) break;
      }
    } finally {
      call.cancel();
    }
    const listeners = totals.get('listeners') ?? 0;
    const quality = (name: string) => (listeners > 0 ? (totals.get(name) ?? null) : null);
    const body: LiveStreamFigures = {
      streamId: String(streamId),
      live,
      listeners,
      listeningMinutes: totals.get('listening_minutes') ?? 0,
      bitrateKbps: quality('bitrate_kbps'),
      rttMs: quality('rtt_ms'),
      lossPct: quality('loss_pct'),
      countries: [...countries.values()].sort((a, b) => b.listeners - a.listeners || b.minutes - a.minutes),
      at: at.toISOString(),
    };
    return json(body, 200, NO_STORE);
  });

  routes.route('GET', '/analytics/streams/:streamId/summary', async (request) => {
    const token = requireBearer(request);
    const streamId = streamIdParam(request);
    const context = callContext(request, token);
    const info = (await stream.getStreamInfo({ streamId }, context)).stream;
    if (!info) throw new Error('control plane replied without stream');
    const from = timeParam(request, 'from') ?? info.startedAt ?? new Date(0);
    const to = timeParam(request, 'to') ?? info.endedAt ?? new Date();
    const figures = await analytics.getAnalytics(
      { eventType: '', userId: 0, from, to, streamId, trackId: 0, channel: false },
      context,
    );
    const body: StreamSummary = {
      streamId: String(streamId),
      title: info.title,
      from: from.toISOString(),
      to: to.toISOString(),
      peakListeners: figures.peakListeners,
      averageListeners: figures.averageListeners,
      listeningMinutes: figures.listeningMinutes,
      uniqueListeners: figures.uniqueListeners,
      countries: figures.countries.map((c) => ({
        country: c.country,
        listeners: c.listeners,
        minutes: c.minutes,
      })),
      bitrateKbps: percentiles(figures.bitrateKbps),
      rttMs: percentiles(figures.rttMs),
      lossPct: percentiles(figures.lossPct),
      chatMessages: figures.chatMessages,
      reports: figures.reports,
      moderatorActions: figures.moderatorActions,
    };
    return json(body, 200, NO_STORE);
  });

  routes.route('GET', '/analytics/streams/:streamId/series', async (request) => {
    const token = requireBearer(request);
    const streamId = streamIdParam(request);
    const names = metricsParam(request);
    const from = timeParam(request, 'from');
    const to = timeParam(request, 'to');
    const step = intParam(request, 'step', 1, 366 * 86_400) ?? 0;
    const response = await analytics.getMetrics(
      { names, streamId, from, to, stepSeconds: step },
      callContext(request, token),
    );
    const body: MetricSeriesSet = {
      streamId: String(streamId),
      series: names.map((name) => {
        const points = response.metrics.filter((m) => m.name === name);
        return {
          name,
          stepSeconds: Number(points[0]?.labels.step_seconds ?? step) || 60,
          points: points.map((m) => ({ t: (m.timestamp ?? new Date(0)).toISOString(), v: m.value })),
        };
      }),
    };
    return json(body, 200, NO_STORE);
  });

  routes.route('GET', '/analytics/streams', async (request) => {
    const token = requireBearer(request);
    const limit = intParam(request, 'limit', 1, 100) ?? 20;
    const response = await analytics.getAnalytics(
      { eventType: '', userId: 0, from: undefined, to: undefined, streamId: 0, trackId: 0, channel: true },
      callContext(request, token),
    );
    const body: z.infer<typeof pastStreamsSchema> = {
      streams: response.streams.slice(0, limit).map((s) => ({
        streamId: String(s.streamId),
        title: s.title,
        startedAt: s.startedAt?.toISOString() ?? null,
        endedAt: s.endedAt?.toISOString() ?? null,
        peakListeners: s.peakListeners,
        listeningMinutes: s.listeningMinutes,
      })),
    };
    return json(body, 200, NO_STORE);
  });
}
