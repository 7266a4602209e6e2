/** The chart module renders what the series says: axes, labels, the line, and the text alternative. */
import { describe, expect, it } from 'vitest';
import { barChart } from './bar-chart.js';
import { lineChart } from './line-chart.js';
import { formatNumber, niceTicks } from './scale.js';
import { type SvgNode, textOf, walk } from './svg-tree.js';

const hhmm = (date: Date) => date.toISOString().slice(11, 16);
const byClass = (tree: SvgNode, name: string) =>
  [...walk(tree)].filter((node) =>
    String(node.attrs.class ?? '')
      .split(' ')
      .includes(name),
  );

describe('niceTicks', () => {
  it('gives round steps from 0 up to at least the maximum', () => {
    expect(niceTicks(3)).toEqual([0, 1, 2, 3]);
    expect(niceTicks(7)).toEqual([0, 2, 4, 6, 8]);
    expect(niceTicks(130)).toEqual([0, 50, 100, 150]);
    expect(niceTicks(0.3)).toEqual([0, 0.1, 0.2, 0.3]);
    expect(niceTicks(0)).toEqual([0, 1]);
  });
  it('reads large numbers short', () => {
    expect([formatNumber(12), formatNumber(1.25), formatNumber(25_000), formatNumber(3_400_000)]).toEqual([
      '12',
      '1.25',
      '25k',
      '3.4M',
    ]);
  });
});

describe('lineChart', () => {
  const points = [
    { t: '2026-03-01T10:00:00Z', v: 0 },
    { t: '2026-03-01T10:01:00Z', v: 2 },
    { t: '2026-03-01T10:02:00Z', v: 3 },
    { t: '2026-03-01T10:03:00Z', v: 1 },
    { t: '2026-03-01T10:04:00Z', v: 1 },
  ];
  const chart = lineChart({ title: 'Listeners', unit: 'listeners', points, formatTime: hhmm });

  it('draws one vertex per point, the first on the left edge and the highest at the top', () => {
    expect(chart.tag).toBe('svg');
    expect(chart.attrs['data-points']).toBe(5);
    const [line] = byClass(chart, 'chart-line');
    const vertices = String(line?.attrs.d)
      .slice(1)
      .split('L')
      .map((pair) => pair.split(',').map(Number));
    expect(vertices).toHaveLength(5);
    expect(vertices[0]?.[0]).toBe(48);
    expect(vertices[4]?.[0]).toBe(624);
    // The y axis ends at 3 (a nice tick), so the value 3 is at the top margin and 0 on the baseline.
    expect(vertices[2]?.[1]).toBe(12);
    expect(vertices[0]?.[1]).toBe(172);
  });

  it('labels both axes', () => {
    const yLabels = byClass(byClass(chart, 'chart-y')[0] as SvgNode, 'chart-label').map(textOf);
    expect(yLabels).toEqual(['0', '1', '2', '3']);
    const xLabels = byClass(byClass(chart, 'chart-x')[0] as SvgNode, 'chart-label').map(textOf);
    expect(xLabels).toEqual(['10:00', '10:01', '10:02', '10:03', '10:04']);
  });

  it('says what it shows in words: its accessible name and title', () => {
    const summary =
      'Listeners from 10:00 to 10:04: lowest 0 listeners, highest 3 listeners, last 1 listeners (5 points).';
    expect(chart.attrs.role).toBe('img');
    expect(chart.attrs['aria-label']).toBe(summary);
    expect(textOf([...walk(chart)].find((node) => node.tag === 'title') as SvgNode)).toBe(summary);
  });

  it('says so when there is nothing to draw, and draws a lone point as a dot', () => {
    const empty = lineChart({ title: 'Round trip', unit: 'ms', points: [] });
    expect(empty.attrs['aria-label']).toBe('Round trip: no data in this range.');
    expect(byClass(empty, 'chart-line')).toEqual([]);
    expect(textOf(byClass(empty, 'chart-empty')[0] as SvgNode)).toBe('No data in this range');
    const lone = lineChart({ title: 'Loss', unit: '%', points: [{ t: '2026-03-01T10:00:00Z', v: 0.5 }] });
    expect(byClass(lone, 'chart-line-point')).toHaveLength(1);
  });
});

describe('barChart', () => {
  it('draws one bar per entry, longest for the largest, values written beside them', () => {
    const chart = barChart({
      title: 'Countries',
      unit: 'min',
      bars: [
        { label: 'DE', value: 120 },
        { label: 'JP', value: 60 },
        { label: 'BR', value: 30 },
      ],
    });
    const widths = byClass(chart, 'chart-bar').map((bar) => Number(bar.attrs.width));
    expect(widths).toHaveLength(3);
    expect(widths[0]).toBeGreaterThan(widths[1] ?? 0);
    expect(widths[1]).toBe((widths[0] ?? 0) / 2);
    expect(byClass(chart, 'chart-label').map(textOf)).toEqual([
      'DE',
      '120 min',
      'JP',
      '60 min',
      'BR',
      '30 min',
    ]);
    expect(chart.attrs['aria-label']).toBe('Countries: DE 120 min, JP 60 min, BR 30 min.');
  });
});
