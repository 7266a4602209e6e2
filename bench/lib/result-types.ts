/**
 * The shape of one benchmark invocation's result (what bench/results/*.json hold); results.ts
 * writes it, report.ts renders it.
 */
import type { MachineInfo } from './machine.js';
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
