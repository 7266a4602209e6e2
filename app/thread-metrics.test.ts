/** One /metrics from several threads' registries (thread-metrics.ts), on real prom-client registries. */
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
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

describe('aggregateThreadMetrics with states', () => {
  /** A thread's registry with the dependency and breaker gauges as common/ declares them. */
  async function stateRegistry(postgresUp: number | null, breakerState: number | null) {
    const registry = new Registry();
    const up = new Gauge({
      name: 'veza_dependency_up',
      help: 'up',
      labelNames: ['dependency'],
      registers: [registry],
      aggregator: 'min',
    });
    const breaker = new Gauge({
      name: 'veza_circuit_breaker_state',
      help: 'state',
      labelNames: ['target', 'peer'],
      registers: [registry],
      aggregator: 'max',
    });
    if (postgresUp !== null) up.set({ dependency: 'postgres' }, postgresUp);
    if (breakerState !== null) breaker.set({ target: 'control-plane', peer: '' }, breakerState);
    return registry.getMetricsAsJSON();
  }

  it('shows a dependency down when any thread finds it down, and the worst breaker state', async () => {
    const registry = aggregateThreadMetrics(
      { thread: 'supervisor', metrics: await stateRegistry(null, null) },
      [
        { thread: 'control-plane', metrics: await stateRegistry(0, null) },
        { thread: 'worker', metrics: await stateRegistry(1, null) },
        { thread: 'edge', metrics: await stateRegistry(null, 2) },
      ],
    );
    const text = await registry.metrics();
    expect(text).toMatch(/^veza_dependency_up\{dependency="postgres"\} 0$/m);
    expect(text).toMatch(/^veza_circuit_breaker_state\{target="control-plane",peer=""\} 2$/m);
  });

  it('declares them with those aggregators in common/', async () => {
    // common/index.js loads both modules, which declare the gauges.
    const { metricsRegistry } = await import('../common/index.js');
    const json = await metricsRegistry().getMetricsAsJSON();
    expect(json.find((metric) => metric.name === 'veza_dependency_up')?.aggregator).toBe('min');
    expect(json.find((metric) => metric.name === 'veza_circuit_breaker_state')?.aggregator).toBe('max');
  });
});
