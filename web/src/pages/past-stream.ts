/**
 * `/studio/streams/:id`: the analytics of one stream (GET /analytics/streams/:id/summary and
 * /series): the headline figures, then charts of listeners over time, listening minutes,
 * countries and delivery quality. Only the stream's owner (or an admin) may read them; the
 * server says so and the page shows its message.
 */
import type { MetricSeries, StreamSummary } from '../../../common/contracts/browser.js';
import { ANALYTICS_METRIC_NAMES } from '../../../common/contracts/browser.js';
import { analyticsApi, countryName, formatMinutes, orDash, stepFor } from '../analytics/api.js';
import { ApiError } from '../api.js';
import { withToken } from '../auth.js';
import { barChart } from '../charts/bar-chart.js';
import { chartFigure } from '../charts/figure.js';
import { defaultTimeFormat, lineChart } from '../charts/line-chart.js';
import { formatNumber } from '../charts/scale.js';
import { errorMessage, h, statusLine } from '../dom.js';
import { whenSignedIn } from '../signed-in.js';
import { formatWhen } from './past-streams.js';

interface SeriesChart {
  metric: (typeof ANALYTICS_METRIC_NAMES)[number];
  caption: string;
  unit: string;
  testId: string;
}

const TIME_CHARTS: SeriesChart[] = [
  { metric: 'listeners', caption: 'Listeners over time', unit: 'listeners', testId: 'chart-listeners' },
  { metric: 'listening_minutes', caption: 'Listening minutes', unit: 'min', testId: 'chart-minutes' },
  { metric: 'bitrate_kbps', caption: 'Bitrate received', unit: 'kbit/s', testId: 'chart-bitrate' },
  { metric: 'rtt_ms', caption: 'Round trip', unit: 'ms', testId: 'chart-rtt' },
  { metric: 'loss_pct', caption: 'Packet loss', unit: '%', testId: 'chart-loss' },
  { metric: 'chat_messages', caption: 'Chat messages', unit: 'messages', testId: 'chart-chat' },
];

function percentiles(p: StreamSummary['rttMs'], unit: string, digits = 0): string {
  return `median ${orDash(p.p50, unit, digits)}, 95th percentile ${orDash(p.p95, unit, digits)}`;
}

function facts(summary: StreamSummary): HTMLElement {
  const rows: Array<[string, string, string]> = [
    ['Peak listeners', String(summary.peakListeners), 'peak'],
    ['Average listeners', formatNumber(summary.averageListeners), 'average'],
    ['Unique listeners', String(summary.uniqueListeners), 'unique'],
    ['Listening time', formatMinutes(summary.listeningMinutes), 'minutes'],
    ['Bitrate received', percentiles(summary.bitrateKbps, 'kbit/s'), 'bitrate'],
    ['Round trip', percentiles(summary.rttMs, 'ms'), 'rtt'],
    ['Packet loss', percentiles(summary.lossPct, '%', 1), 'loss'],
    [
      'Chat',
      `${summary.chatMessages} messages, ${summary.reports} reports, ${summary.moderatorActions} moderator actions`,
      'chat',
    ],
  ];
  return h(
    'dl',
    { class: 'facts', 'data-testid': 'summary' },
    ...rows.flatMap(([term, value, key]) => [h('dt', {}, term), h('dd', { 'data-fact': key }, value)]),
  );
}

function timeChart(chart: SeriesChart, series: MetricSeries | undefined): HTMLElement {
  const points = series?.points ?? [];
  return chartFigure({
    caption: chart.caption,
    chart: lineChart({ title: chart.caption, unit: chart.unit, points }),
    columns: ['Time', chart.caption],
    rows: points.map((point) => [
      defaultTimeFormat(new Date(point.t)),
      `${formatNumber(point.v)} ${chart.unit}`,
    ]),
    testId: chart.testId,
  });
}

function countriesChart(summary: StreamSummary): HTMLElement {
  const bars = summary.countries.map((country) => ({
    label: country.country,
    value: Math.round(country.minutes * 10) / 10,
  }));
  return chartFigure({
    caption: 'Listening minutes by country',
    chart: barChart({ title: 'Listening minutes by country', unit: 'min', bars }),
    columns: ['Country', 'Listening'],
    rows: summary.countries.map((country) => [
      countryName(country.country),
      `${formatMinutes(country.minutes)}, ${country.listeners} ${country.listeners === 1 ? 'listener' : 'listeners'}`,
    ]),
    testId: 'chart-countries',
  });
}

function describeFailure(error: unknown): string {
  if (error instanceof ApiError && error.status === 403)
    return 'These figures are only for the stream’s owner.';
  if (error instanceof ApiError && error.status === 404) return 'There is no stream with this id.';
  return `Could not load the figures: ${errorMessage(error)}`;
}

export function pastStreamPage(streamId: string) {
  return {
    title: 'Stream analytics',
    render(main: HTMLElement) {
      const heading = h('h1', {}, 'Stream analytics');
      const container = h('div', {});
      main.append(heading, h('p', {}, h('a', { href: '/studio/streams' }, 'All your streams')), container);
      whenSignedIn(container, 'Sign in to see this stream’s figures', () => {
        const status = statusLine('analytics-status');
        const body = h('div', { 'data-testid': 'stream-analytics' });
        status.info('Loading the figures…');
        void (async () => {
          try {
            const summary = await withToken((token) => analyticsApi.summary(token, streamId));
            heading.textContent = summary.title;
            document.title = `${summary.title} · Analytics · Veza Live`;
            const set = await withToken((token) =>
              analyticsApi.series(token, streamId, {
                metrics: ANALYTICS_METRIC_NAMES,
                from: summary.from,
                to: summary.to,
                stepSeconds: stepFor(summary.from, summary.to),
              }),
            );
            const byName = new Map(set.series.map((series) => [series.name, series]));
            const [listeners, minutes, ...quality] = TIME_CHARTS;
            body.replaceChildren(
              h('p', { class: 'hint' }, `${formatWhen(summary.from)} to ${formatWhen(summary.to)}`),
              facts(summary),
              h('h2', {}, 'Audience'),
              ...[listeners, minutes].flatMap((chart) =>
                chart ? [timeChart(chart, byName.get(chart.metric))] : [],
              ),
              h('h2', {}, 'Countries'),
              countriesChart(summary),
              h('h2', {}, 'Delivery quality and chat'),
              ...quality.map((chart) => timeChart(chart, byName.get(chart.metric))),
            );
            status.clear();
          } catch (error) {
            status.error(describeFailure(error));
          }
        })();
        return h('div', {}, status.element, body);
      });
    },
  };
}
