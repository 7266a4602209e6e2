/**
 * Horizontal bars with their labels and values written out (countries by listening minutes,
 * say): the numbers are in the chart as text, so it reads without telling bar lengths apart.
 */
import { formatNumber } from './scale.js';
import { type SvgNode, svg } from './svg-tree.js';

export interface Bar {
  label: string;
  value: number;
}

export interface BarChartOptions {
  title: string;
  unit: string;
  bars: Bar[];
  width?: number;
}

const ROW = 26;
const LABEL_WIDTH = 72;
const VALUE_WIDTH = 110;

export function barSummary(options: BarChartOptions): string {
  if (options.bars.length === 0) return `${options.title}: no data.`;
  const parts = options.bars.map(
    (bar) => `${bar.label} ${formatNumber(bar.value)}${options.unit ? ` ${options.unit}` : ''}`,
  );
  return `${options.title}: ${parts.join(', ')}.`;
}

export function barChart(options: BarChartOptions): SvgNode {
  const width = options.width ?? 640;
  const bars = options.bars.filter((bar) => Number.isFinite(bar.value) && bar.value >= 0);
  const height = Math.max(1, bars.length) * ROW + 8;
  const max = Math.max(0, ...bars.map((bar) => bar.value));
  const room = width - LABEL_WIDTH - VALUE_WIDTH;
  const summary = barSummary({ ...options, bars });
  return svg(
    'svg',
    {
      class: 'chart',
      viewBox: `0 0 ${width} ${height}`,
      role: 'img',
      'aria-label': summary,
      'data-points': bars.length,
    },
    svg('title', {}, summary),
    bars.length === 0
      ? svg('text', { class: 'chart-empty', x: width / 2, y: ROW - 8, 'text-anchor': 'middle' }, 'No data')
      : null,
    ...bars.map((bar, index) => {
      const top = 4 + index * ROW;
      const length = max > 0 ? Math.max(1, Math.round((bar.value / max) * room)) : 1;
      return svg(
        'g',
        { class: 'chart-row', 'aria-hidden': 'true' },
        svg(
          'text',
          {
            class: 'chart-label',
            x: LABEL_WIDTH - 8,
            y: top + ROW / 2,
            'text-anchor': 'end',
            'dominant-baseline': 'middle',
          },
          bar.label,
        ),
        svg('rect', {
          class: 'chart-bar',
          x: LABEL_WIDTH,
          y: top + 3,
          width: length,
          height: ROW - 8,
          rx: 2,
        }),
        svg(
          'text',
          {
            class: 'chart-label',
            x: LABEL_WIDTH + length + 6,
            y: top + ROW / 2,
            'dominant-baseline': 'middle',
          },
          `${formatNumber(bar.value)}${options.unit ? ` ${options.unit}` : ''}`,
        ),
      );
    }),
  );
}
