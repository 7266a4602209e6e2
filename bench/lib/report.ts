/** The HTML report: one self-contained page (inline CSS and SVG) per result. */
import type { BenchResult, ReportTable } from './result-types.js';
import { type ChartSpec, chart, escapeHtml } from './svg.js';

const STYLE = `
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#111}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}th{background:#f5f5f5}
td:first-child,th:first-child{text-align:left}
.met{color:#15803d}.missed{color:#b91c1c}
.charts{display:flex;flex-wrap:wrap;gap:1rem}
figure.chart{margin:0}figcaption{font-weight:600;margin-bottom:.25rem}
svg text{font-size:11px;fill:#333}svg .grid{stroke:#eee}svg .frame{fill:none;stroke:#999}
code{background:#f5f5f5;padding:0 .25rem;word-break:break-all}
`;

type Row = Record<string, unknown>;

/** Flattens one level of nesting (join_ms.p95) and drops arrays and deeper objects (CDFs, errors). */
function flatten(row: Row): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(row)) {
    if (Array.isArray(value)) continue;
    if (value !== null && typeof value === 'object') {
      for (const [inner, v] of Object.entries(value as Row)) {
        if (v === null || typeof v !== 'object') out[`${key}.${inner}`] = cell(v);
      }
    } else {
      out[key] = cell(value);
    }
  }
  return out;
}

function cell(value: unknown): string {
  if (value === null || value === undefined) return '–';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : '–';
  return String(value);
}

function table(rows: readonly unknown[]): string {
  const flat = rows.map((row) => flatten(row as Row));
  const columns = [...new Set(flat.flatMap((row) => Object.keys(row)))];
  if (columns.length === 0) return '<p>no rows</p>';
  const head = columns.map((c) => `<th>${escapeHtml(c)}</th>`).join('');
  const body = flat
    .map((row) => `<tr>${columns.map((c) => `<td>${escapeHtml(row[c] ?? '')}</td>`).join('')}</tr>`)
    .join('');
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

export function renderReport(result: BenchResult, charts: ChartSpec[], tables: ReportTable[] = []): string {
  const targets = result.targets
    .map(
      (t) =>
        `<tr><td>${escapeHtml(t.name)}</td><td>${escapeHtml(t.target)}</td><td>${escapeHtml(cell(t.value))}</td>` +
        `<td class="${t.met === true ? 'met' : t.met === false ? 'missed' : ''}">${t.met === null ? 'n/a' : t.met ? 'met' : 'missed'}${t.limited_by && t.met === false ? ` (limited by ${escapeHtml(t.limited_by)})` : ''}${t.server ? ` [${escapeHtml(t.server)}]` : ''}</td></tr>`,
    )
    .join('');
  const m = result.machine;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Veza Live benchmark: ${escapeHtml(result.scenario)}</title>
<style>${STYLE}</style></head><body>
<h1>Veza Live benchmark: ${escapeHtml(result.scenario)}</h1>
<p>${escapeHtml(result.measured)}</p>
<p>Commit <code>${escapeHtml(result.commit)}</code>${result.commit_dirty ? ' (with uncommitted changes)' : ''},
${escapeHtml(result.started_at)} to ${escapeHtml(result.finished_at)}.<br>
Machine: ${m.cores} cores (${escapeHtml(m.cpu_model)}), ${m.memory_mb} MB, ${escapeHtml(m.os)}, Node ${escapeHtml(m.node)},
load average ${m.load_avg_1m_at_start} at start. Options: <code>${escapeHtml(JSON.stringify(result.options))}</code></p>
<h2>Charts</h2><div class="charts">${charts.map(chart).join('')}</div>
<h2>Targets</h2>${targets ? `<table><thead><tr><th>target</th><th>wanted</th><th>measured</th><th></th></tr></thead><tbody>${targets}</tbody></table>` : '<p>none</p>'}
<h2>Measured</h2>${table(result.steps)}
${tables
  .map(
    (t) =>
      `<h2>${escapeHtml(t.title)}</h2>${t.description ? `<p>${escapeHtml(t.description)}</p>` : ''}${table(t.rows)}`,
  )
  .join('\n')}
${
  result.baseline
    ? `<h2>Baseline: ${escapeHtml(result.baseline.system)}</h2><p>${escapeHtml(result.baseline.description)}</p>
${table(result.baseline.steps)}<h3>Ratios (measured / baseline)</h3>${table(result.baseline.ratios)}`
    : '<h2>Baseline</h2><p>none</p>'
}
${result.notes.length > 0 ? `<h2>Notes</h2><ul>${result.notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('')}</ul>` : ''}
</body></html>
`;
}
