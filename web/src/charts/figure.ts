/**
 * A chart on the page: a figure with its caption, the drawing, and the figures themselves in a
 * table behind a disclosure, the text alternative for anyone who cannot see or read the drawing.
 */
import { h } from '../dom.js';
import { type SvgNode, toElement } from './svg-tree.js';

export interface ChartFigureOptions {
  caption: string;
  chart: SvgNode;
  columns: [string, string];
  rows: Array<[string, string]>;
  testId?: string;
}

export function chartFigure(options: ChartFigureOptions): HTMLElement {
  const table = h(
    'table',
    { class: 'chart-table' },
    h('thead', {}, h('tr', {}, ...options.columns.map((column) => h('th', { scope: 'col' }, column)))),
    h(
      'tbody',
      {},
      ...options.rows.map(([label, value]) =>
        h('tr', {}, h('th', { scope: 'row' }, label), h('td', {}, value)),
      ),
    ),
  );
  const figure = h(
    'figure',
    { class: 'chart-figure', 'data-testid': options.testId },
    h('figcaption', {}, options.caption),
    options.rows.length > 0
      ? h('details', {}, h('summary', {}, `${options.caption}: the data`), table)
      : null,
  );
  figure.insertBefore(toElement(options.chart), figure.children[1] ?? null);
  return figure;
}
