/**
 * The result of one benchmark invocation and where it is written: bench/results/
 * <scenario>-<timestamp>.json and an HTML report next to it. The top-level keys
 * `scenario`, `commit`, `machine`, `options`, `steps` and `baseline` are a contract that
 * scripts and dashboards read: add fields, never rename or remove these.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { MachineInfo } from './machine.js';
import { renderReport } from './report.js';
import type { ChartSpec } from './svg.js';

export interface TargetCheck {
  name: string;
  target: string;
  value: number | string | null;
  met: boolean | null;
}

export interface BenchResult {
  scenario: string;
  commit: string;
  commit_dirty: boolean;
  machine: MachineInfo;
  options: Record<string, unknown>;
  started_at: string;
  finished_at: string;
  /** What exactly was measured, in words (the path through the system). */
  measured: string;
  steps: unknown[];
  baseline: {
    system: string;
    description: string;
    steps: unknown[];
    /** measured / baseline for the headline figures (above 1: the platform costs more). */
    ratios: Array<Record<string, number | string | null>>;
  } | null;
  targets: TargetCheck[];
  notes: string[];
}

/** What a scenario hands back: its part of the result and the charts of its report. */
export type ScenarioOutput = Pick<BenchResult, 'measured' | 'steps' | 'baseline' | 'targets' | 'notes'> & {
  options: Record<string, unknown>;
  charts: ChartSpec[];
};

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
): Promise<{ json: string; html: string }> {
  await mkdir(dir, { recursive: true });
  const base = path.join(dir, `${result.scenario}-${timestampForFile(new Date(result.started_at))}`);
  const json = `${base}.json`;
  const html = `${base}.html`;
  await writeFile(json, `${JSON.stringify(result, null, 2)}\n`);
  await writeFile(html, renderReport(result, charts));
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
