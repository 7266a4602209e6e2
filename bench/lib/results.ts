/**
 * The result of one benchmark invocation and where it is written: bench/results/
 * <scenario>-<timestamp>.json and an HTML report next to it. The top-level keys
 * `scenario`, `commit`, `machine`, `options`, `steps` and `baseline` are a contract that
 * scripts and dashboards read: add fields, never rename or remove these.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { renderReport } from './report.js';
import type { BenchResult, ReportTable } from './result-types.js';
import type { ChartSpec } from './svg.js';

export type { BenchResult, ComparedRun, ReportTable, ScenarioOutput, TargetCheck } from './result-types.js';
export { saturation } from './result-types.js';

export function timestampForFile(date: Date): string {
  return date
    .toISOString()
    .replace(/[:.]/g, '-')
    .replace(/-\d{3}Z$/, 'Z');
}

export async function writeResult(
  dir: string,
  result: BenchResult,
  charts: ChartSpec[],
  tables: ReportTable[] = [],
): Promise<{ json: string; html: string }> {
  await mkdir(dir, { recursive: true });
  const base = path.join(dir, `${result.scenario}-${timestampForFile(new Date(result.started_at))}`);
  const json = `${base}.json`;
  const html = `${base}.html`;
  await writeFile(json, `${JSON.stringify(result, null, 2)}\n`);
  await writeFile(html, renderReport(result, charts, tables));
  return { json, html };
}

/** a / b rounded, or null when either is missing or b is 0. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (
    a === null ||
    a === undefined ||
    b === null ||
    b === undefined ||
    !Number.isFinite(a) ||
    !Number.isFinite(b) ||
    b === 0
  ) {
    return null;
  }
  return Math.round((a / b) * 100) / 100;
}
