/** One /metrics from several threads' registries (thread-metrics.ts), on real prom-client registries. */
import { Counter, collectDefaultMetrics, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { aggregateThreadMetrics } from './thread-metrics.js';

/** A thread's registry: the default metrics (as common/metrics.ts collects them) and one role counter. */
async function threadRegistry(requests: number) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'veza_' });
  const counter = new Counter({
    name: 'veza_requests_total',
    help: 'requests',
    labelNames: ['route'],
    registers: [registry],
  });
  if (requests > 0) counter.inc({ route: '/join' }, requests);
  return registry.getMetricsAsJSON();
}

describe('aggregateThreadMetrics', () => {
  it('sums the roles’ metrics, keeps each loop’s runtime apart and the process’s figures once', async () => {
    const registry = aggregateThreadMetrics({ thread: 'supervisor', metrics: await threadRegistry(0) }, [
      { thread: 'edge', metrics: await threadRegistry(3) },
      { thread: 'control-plane', metrics: await threadRegistry(0) },
      { thread: 'media', metrics: await threadRegistry(2) },
    ]);
    const text = await registry.metrics();

    expect(text).toMatch(/^veza_requests_total\{route="\/join"\} 5$/m);
    for (const thread of ['supervisor', 'edge', 'control-plane', 'media']) {
      expect(text).toMatch(new RegExp(`^veza_nodejs_eventloop_lag_seconds\\{thread="${thread}"\\} `, 'm'));
      expect(text).toMatch(new RegExp(`^veza_nodejs_heap_size_used_bytes\\{thread="${thread}"\\} `, 'm'));
    }
    expect(text.match(/^veza_process_cpu_user_seconds_total /gm)).toHaveLength(1);
    expect(text.match(/^veza_process_resident_memory_bytes /gm)).toHaveLength(1);
    // prom-client omits the start time when it aggregates processes; one process keeps it.
    expect(text).toMatch(/^veza_process_start_time_seconds \d+$/m);
  });
});
