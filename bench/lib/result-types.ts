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
  /**
   * Set on a latency target when the run's own load generator (or the shared machine) was
   * saturated while it was measured, so the figure is not the platform's alone: what, measured.
   */
  limited_by?: string;
  /**
   * The server's own reading of the same figure where the platform measures it (the chat ack:
   * its time from frame read to ack written, and the slowest step within it).
   */
  server?: string;
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
  /**
   * `fanout --nodes N`: the single-node platform run of the same invocation, beside the cluster
   * run in `steps` (ratios: cluster / single node). Absent otherwise.
   */
  single_node?: ComparedRun;
  targets: TargetCheck[];
  notes: string[];
}

/** Another system measured in the same invocation, and measured / it for the headline figures. */
export type ComparedRun = NonNullable<BenchResult['baseline']>;

/** A table of the HTML report beyond the steps' own (e.g. the per-node split of a `--nodes` run). */
export interface ReportTable {
  title: string;
  description?: string;
  rows: unknown[];
}

/** What a scenario hands back: its part of the result and the charts and extra tables of its report. */
export type ScenarioOutput = Pick<
  BenchResult,
  'measured' | 'steps' | 'baseline' | 'single_node' | 'targets' | 'notes'
> & {
  options: Record<string, unknown>;
  charts: ChartSpec[];
  tables?: ReportTable[];
};

/** Above these, a load process's own scheduling sets the latencies it measures. */
export const LOADGEN_SATURATED_CPU_PCT = 85;
export const LOADGEN_SATURATED_LOOP_DELAY_MS = 50;
export const MACHINE_SATURATED_PCT = 95;

/**
 * What saturated while a latency was measured, if anything: a load process near a full core or
 * with a long event-loop delay (its timestamps wait for it), or the whole machine.
 */
export function saturation(reading: {
  loadgenCpuPct?: number | null;
  loadgenLoopDelayP99Ms?: number | null;
  machineBusyPct?: number | null;
}): string | undefined {
  const causes: string[] = [];
  const { loadgenCpuPct, loadgenLoopDelayP99Ms, machineBusyPct } = reading;
  if (
    (loadgenCpuPct ?? 0) >= LOADGEN_SATURATED_CPU_PCT ||
    (loadgenLoopDelayP99Ms ?? 0) >= LOADGEN_SATURATED_LOOP_DELAY_MS
  ) {
    causes.push(
      `the load generator (a load process at ${loadgenCpuPct ?? '?'}% of a core, its event-loop delay p99 ${loadgenLoopDelayP99Ms ?? '?'} ms)`,
    );
  }
  if ((machineBusyPct ?? 0) >= MACHINE_SATURATED_PCT)
    causes.push(`the shared machine (${machineBusyPct}% busy)`);
  return causes.length > 0 ? causes.join('; ') : undefined;
}
