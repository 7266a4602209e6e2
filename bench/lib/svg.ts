/**
 * Inline SVG line charts for the HTML report (no external assets, no chart library): latency
 * CDFs on a log or linear x axis, and metrics against listener count.
 */

export interface Series {
  name: string;
  points: Array<[number, number]>;
  /** Dashed: used for baselines. */
  dashed?: boolean;
  /** For a bar chart: the value of each category. */
  values?: Record<string, number>;
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  logX?: boolean;
  /** Fixed y range, e.g. [0, 1] for a CDF. */
  yRange?: [number, number];
  /** Makes it a grouped bar chart over these categories (series give `values`). */
  categories?: string[];
}

const WIDTH = 640;
const HEIGHT = 320;
const MARGIN = { left: 64, right: 16, top: 32, bottom: 48 };
const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#4b5563', '#be185d'];

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 2.5, 5, 10].find((m) => m * magnitude >= raw) ?? 10) * magnitude;
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step)
    ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function logTicks(min: number, max: number): number[] {
  const ticks: number[] = [];
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= min && v <= max) ticks.push(v);
    }
  }
  return ticks;
}

function format(value: number): string {
  if (value === 0) return '0';
  const abs = Math.abs(value);
  if (abs >= 1e6) return `${value / 1e6}M`;
  if (abs >= 1e4) return `${value / 1e3}k`;
  if (abs < 0.01) return value.toExponential(0);
  return String(Number(value.toPrecision(3)));
}

export function chart(spec: ChartSpec): string {
  return spec.categories ? barChart(spec, spec.categories) : lineChart(spec);
}

function barChart(spec: ChartSpec, categories: string[]): string {
  const header = `<figure class="chart"><figcaption>${escapeHtml(spec.title)}</figcaption>`;
  const values = spec.series.flatMap((s) => categories.map((c) => s.values?.[c] ?? 0));
  if (values.length === 0) return `${header}<p class="empty">no data</p></figure>`;
  const yMax = Math.max(...values) * 1.1 || 1;
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const sy = (y: number) => MARGIN.top + plotH - (y / yMax) * plotH;
  const group = plotW / categories.length;
  const bar = (group * 0.8) / Math.max(1, spec.series.length);
  const parts: string[] = [];
  for (const t of niceTicks(0, yMax)) {
    const y = sy(t).toFixed(1);
    parts.push(
      `<line x1="${MARGIN.left}" y1="${y}" x2="${MARGIN.left + plotW}" y2="${y}" class="grid"/>`,
      `<text x="${MARGIN.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${format(t)}</text>`,
    );
  }
  categories.forEach((category, c) => {
    const x0 = MARGIN.left + c * group + group * 0.1;
    spec.series.forEach((series, s) => {
      const value = series.values?.[category] ?? 0;
      const color = COLORS[s % COLORS.length];
      parts.push(
        `<rect x="${(x0 + s * bar).toFixed(1)}" y="${sy(value).toFixed(1)}" width="${(bar - 2).toFixed(1)}" height="${(MARGIN.top + plotH - sy(value)).toFixed(1)}" fill="${color}"${series.dashed ? ' fill-opacity="0.5"' : ''}><title>${escapeHtml(`${series.name} ${category}: ${value}`)}</title></rect>`,
      );
    });
    parts.push(
      `<text x="${(x0 + group * 0.4).toFixed(1)}" y="${MARGIN.top + plotH + 16}" text-anchor="middle">${escapeHtml(category)}</text>`,
    );
  });
  spec.series.forEach((series, s) => {
    const ly = MARGIN.top + 14 + s * 16;
    parts.push(
      `<rect x="${MARGIN.left + plotW - 150}" y="${ly - 5}" width="10" height="10" fill="${COLORS[s % COLORS.length]}"/>`,
      `<text x="${MARGIN.left + plotW - 135}" y="${ly}" dominant-baseline="middle">${escapeHtml(series.name)}</text>`,
    );
  });
  parts.push(
    `<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" class="frame"/>`,
    `<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 8}" text-anchor="middle">${escapeHtml(spec.xLabel)}</text>`,
    `<text transform="translate(14 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeHtml(spec.yLabel)}</text>`,
  );
  return `${header}<svg viewBox="0 0 ${WIDTH} ${HEIGHT}" width="${WIDTH}" height="${HEIGHT}" role="img" aria-label="${escapeHtml(spec.title)}">${parts.join('')}</svg></figure>`;
}

function lineChart(spec: ChartSpec): string {
  const finite = spec.series.flatMap((s) =>
    s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!spec.logX || x > 0)),
  );
  const header = `<figure class="chart"><figcaption>${escapeHtml(spec.title)}</figcaption>`;
  if (finite.length === 0) return `${header}<p class="empty">no data</p></figure>`;
  const xs = finite.map(([x]) => x);
  const ys = finite.map(([, y]) => y);
  let xMin = Math.min(...xs);
  let xMax = Math.max(...xs);
  if (spec.logX) {
    xMin = Math.max(Math.min(...xs) / 1.5, 1e-3);
    xMax = xMax * 1.2;
  } else {
    xMin = Math.min(0, xMin);
    if (xMax === xMin) xMax = xMin + 1;
  }
  const [yMin, yMax] = spec.yRange ?? [Math.min(0, ...ys), Math.max(...ys) * 1.1 || 1];
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const sx = (x: number) =>
    MARGIN.left +
    (spec.logX
      ? ((Math.log10(x) - Math.log10(xMin)) / (Math.log10(xMax) - Math.log10(xMin))) * plotW
      : ((x - xMin) / (xMax - xMin)) * plotW);
  const sy = (y: number) => MARGIN.top + plotH - ((y - yMin) / (yMax - yMin || 1)) * plotH;
  const parts: string[] = [];
  const xTicks = spec.logX ? logTicks(xMin, xMax) : niceTicks(xMin, xMax);
  for (const t of xTicks) {
    const x = sx(t).toFixed(1);
    parts.push(
      `<line x1="${x}" y1="${MARGIN.top}" x2="${x}" y2="${MARGIN.top + plotH}" class="grid"/>`,
      `<text x="${x}" y="${MARGIN.top + plotH + 16}" text-anchor="middle">${format(t)}</text>`,
    );
  }
  for (const t of niceTicks(yMin, yMax)) {
    const y = sy(t).toFixed(1);
    parts.push(
      `<line x1="${MARGIN.left}" y1="${y}" x2="${MARGIN.left + plotW}" y2="${y}" class="grid"/>`,
      `<text x="${MARGIN.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${format(t)}</text>`,
    );
  }
  parts.push(
    `<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" class="frame"/>`,
    `<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 8}" text-anchor="middle">${escapeHtml(spec.xLabel)}</text>`,
    `<text transform="translate(14 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeHtml(spec.yLabel)}</text>`,
  );
  const legend: string[] = [];
  spec.series.forEach((series, i) => {
    const color = COLORS[i % COLORS.length];
    const points = series.points.filter(
      ([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!spec.logX || x > 0),
    );
    if (points.length === 0) return;
    const d = points
      .map(([x, y], j) => `${j === 0 ? 'M' : 'L'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`)
      .join(' ');
    parts.push(
      `<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${series.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
    );
    if (points.length <= 12) {
      for (const [x, y] of points) {
        parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${color}"/>`);
      }
    }
    const ly = MARGIN.top + 14 + i * 16;
    legend.push(
      `<rect x="${MARGIN.left + 6}" y="${ly - 7}" width="${Math.min(plotW - 12, 40 + 6.5 * series.name.length)}" height="14" fill="#fff" fill-opacity="0.85"/>`,
      `<line x1="${MARGIN.left + 10}" y1="${ly}" x2="${MARGIN.left + 34}" y2="${ly}" stroke="${color}" stroke-width="2"${series.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      `<text x="${MARGIN.left + 40}" y="${ly}" dominant-baseline="middle">${escapeHtml(series.name)}</text>`,
    );
  });
  parts.push(...legend);
  return `${header}<svg viewBox="0 0 ${WIDTH} ${HEIGHT}" width="${WIDTH}" height="${HEIGHT}" role="img" aria-label="${escapeHtml(spec.title)}">${parts.join('')}</svg></figure>`;
}
