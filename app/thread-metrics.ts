/**
 * One /metrics for a process whose roles run in several threads. prom-client keeps a registry per
 * thread (per V8 isolate), so the supervisor collects each thread's registry as JSON and merges
 * them with prom-client's AggregatorRegistry, as its cluster module does for forked workers, with
 * two differences that threads need:
 *
 * - `veza_process_*` (CPU, resident memory, file descriptors, start time) describe the whole
 *   process, and every thread reports the same figures: summing them would count the process once
 *   per thread. They come from the supervisor's registry alone.
 * - `veza_nodejs_*` (event loop lag, heap, GC, active handles) describe one thread's isolate and
 *   loop: they keep a `thread` label each, so the queueing of each loop shows apart.
 *
 * Everything else (the roles' own metrics) is summed: every thread imports every role's modules,
 * so each registers every metric, and only the thread running a role moves its values off zero.
 */
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { ThreadMetrics } from './thread-messages.js';

const PROCESS_WIDE = 'veza_process_';
const PER_THREAD = 'veza_nodejs_';

export interface ThreadRegistry {
  thread: string;
  metrics: ThreadMetrics;
}

/** `supervisor`: the main thread's registry; `threads`: each role thread's. */
export function aggregateThreadMetrics(supervisor: ThreadRegistry, threads: ThreadRegistry[]): Registry {
  const labelled = (registry: ThreadRegistry, keepProcessWide: boolean): ThreadMetrics =>
    registry.metrics.flatMap((metric) => {
      if (metric.name.startsWith(PROCESS_WIDE)) {
        // One source, taken as it is ('omit', prom-client's choice for the start time across
        // processes, would drop it).
        return keepProcessWide ? [{ ...metric, aggregator: 'first' as const }] : [];
      }
      if (!metric.name.startsWith(PER_THREAD)) return [metric];
      return [
        {
          ...metric,
          values: metric.values.map((value) => ({
            ...value,
            labels: { ...value.labels, thread: registry.thread },
          })),
        },
      ];
    });
  return AggregatorRegistry.aggregate([
    labelled(supervisor, true),
    ...threads.map((registry) => labelled(registry, false)),
  ]);
}
