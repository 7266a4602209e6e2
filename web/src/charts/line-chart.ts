/**
 * A line chart of one series over time, as an SvgNode tree (svg-tree.ts). One series per chart:
 * the analytics series have different units (listeners, kbit/s, ms, %), and one axis per chart
 * keeps each readable. Colours come from the page's CSS variables (styles.css, .chart-*), so the
 * light and dark themes both apply; the text alternative is the svg's label and a summary that
 * says what the line shows (the page adds the full data as a table).
 */
import { formatNumber, linear, niceTicks } from './scale.js';
import { type SvgNode, svg } from './svg-tree.js';

export interface TimePoint {
  /** ISO 8601 time. */
  t: string;
  v: number;
}

export interface LineChartOptions {
  /** What the chart shows ("Listeners"); the start of its accessible name. */
  title: string;
  /** The unit after values in the summary ("listeners", "kbit/s"); empty for none. */
  unit: string;
  points: TimePoint[];
  width?: number;
  height?: number;
  /** How times read on the x axis and in the summary; the user's locale, hours and minutes by default. */
  formatTime?: (date: Date) => string;
}

const MARGIN = { top: 12, right: 16, bottom: 28, left: 48 };

export const defaultTimeFormat = (date: Date): string =>
  date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

/** One sentence for people who do not see the chart: range, extremes, last value. */
export function lineSummary(options: LineChartOptions): string {
  const { title, unit, points } = options;
  const format = options.formatTime ?? defaultTimeFormat;
  if (points.length === 0) return `${title}: no data in this range.`;
  const values = points.map((point) => point.v);
  const withUnit = (value: number) => (unit ? `${formatNumber(value)} ${unit}` : formatNumber(value));
  const first = new Date(points[0]?.t ?? 0);
  const last = new Date(points.at(-1)?.t ?? 0);
  return (
    `${title} from ${format(first)} to ${format(last)}: ` +
    `lowest ${withUnit(Math.min(...values))}, highest ${withUnit(Math.max(...values))}, ` +
    `last ${withUnit(values.at(-1) ?? 0)} (${points.length} ${points.length === 1 ? 'point' : 'points'}).`
  );
}

export function lineChart(options: LineChartOptions): SvgNode {
  const width = options.width ?? 640;
  const height = options.height ?? 200;
  const format = options.formatTime ?? defaultTimeFormat;
  const points = options.points
    .map((point) => ({ time: Date.parse(point.t), v: point.v }))
    .filter((point) => Number.isFinite(point.time) && Number.isFinite(point.v))
    .sort((a, b) => a.time - b.time);
  const summary = lineSummary(options);
  const left = MARGIN.left;
  const right = width - MARGIN.right;
  const top = MARGIN.top;
  const bottom = height - MARGIN.bottom;

  const yTicks = niceTicks(Math.max(0, ...points.map((point) => point.v)));
  const yMax = yTicks.at(-1) ?? 1;
  const y = linear([0, yMax], [bottom, top]);
  const t0 = points[0]?.time ?? 0;
  const t1 = points.at(-1)?.time ?? 0;
  const x = linear([t0, t1], [left, right]);

  const yAxis = svg(
    'g',
    { class: 'chart-axis chart-y', 'aria-hidden': 'true' },
    ...yTicks.map((tick) =>
      svg(
        'g',
        { class: 'chart-tick' },
        svg('line', { class: 'chart-grid', x1: left, x2: right, y1: round(y(tick)), y2: round(y(tick)) }),
        svg(
          'text',
          {
            class: 'chart-label',
            x: left - 6,
            y: round(y(tick)),
            'text-anchor': 'end',
            'dominant-baseline': 'middle',
          },
          formatNumber(tick),
        ),
      ),
    ),
  );

  // Up to five evenly spread times: the first, the last, and what fits between.
  const xTickTimes =
    points.length === 0
      ? []
      : t0 === t1
        ? [t0]
        : Array.from({ length: 5 }, (_, index) => t0 + ((t1 - t0) * index) / 4);
  const xAxis = svg(
    'g',
    { class: 'chart-axis chart-x', 'aria-hidden': 'true' },
    svg('line', { class: 'chart-baseline', x1: left, x2: right, y1: bottom, y2: bottom }),
    ...xTickTimes.map((time, index) =>
      svg(
        'text',
        {
          class: 'chart-label',
          x: round(x(time)),
          y: bottom + 18,
          'text-anchor':
            xTickTimes.length === 1 ? 'middle' : index === 0 ? 'start' : index === 4 ? 'end' : 'middle',
        },
        format(new Date(time)),
      ),
    ),
  );

  const coordinates = points.map((point) => `${round(x(point.time))},${round(y(point.v))}`);
  const line =
    points.length === 0
      ? svg(
          'text',
          { class: 'chart-empty', x: width / 2, y: height / 2, 'text-anchor': 'middle' },
          'No data in this range',
        )
      : points.length === 1
        ? svg('circle', {
            class: 'chart-line-point',
            cx: coordinates[0]?.split(',')[0],
            cy: coordinates[0]?.split(',')[1],
            r: 3,
          })
        : svg('path', { class: 'chart-line', d: `M${coordinates.join('L')}`, fill: 'none' });

  return svg(
    'svg',
    {
      class: 'chart',
      viewBox: `0 0 ${width} ${height}`,
      role: 'img',
      'aria-label': summary,
      'data-points': points.length,
      preserveAspectRatio: 'xMidYMid meet',
    },
    svg('title', {}, summary),
    yAxis,
    xAxis,
    line,
  );
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
