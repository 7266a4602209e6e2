/**
 * Prometheus metrics. One registry per process, with the default process metrics, so
 * every role exposes the same /metrics shape. Domain modules register their own
 * counters on it through `metricsRegistry()`.
 */
import { type Aggregator, Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

let registry: Registry | undefined;

export function metricsRegistry(): Registry {
  if (!registry) {
    registry = new Registry();
    collectDefaultMetrics({ register: registry, prefix: 'veza_' });
  }
  return registry;
}

/** Registers a metric once; a second call with the same name returns the first (tests start servers repeatedly). */
function once<T>(name: string, make: (registers: Registry[]) => T): T {
  const existing = metricsRegistry().getSingleMetric(name);
  if (existing) return existing as T;
  return make([metricsRegistry()]);
}

export function counter<L extends string>(
  name: string,
  help: string,
  labelNames: readonly L[] = [],
): Counter<L> {
  return once(name, (registers) => new Counter({ name, help, labelNames, registers }));
}

/** What a gauge may add to its name, help and labels. */
export interface GaugeOptions<L extends string> {
  /**
   * Runs at every scrape, for values read from elsewhere (a queue's backlog, a readiness probe)
   * rather than kept up to date. With `once`, only the first registration's collect counts, so
   * it should read module-level state, not a closure over one server.
   */
  collect?: (this: Gauge<L>) => Promise<void> | void;
  /**
   * How threaded standalone mode merges the threads' values of one series (app/thread-metrics.ts;
   * default sum). A state several threads report alike wants `min` or `max`, not a sum.
   */
  aggregator?: Aggregator;
}

export function gauge<L extends string>(
  name: string,
  help: string,
  labelNames: readonly L[] = [],
  options: GaugeOptions<L> = {},
): Gauge<L> {
  const { collect, aggregator } = options;
  return once(
    name,
    (registers) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        ...(collect ? { collect } : {}),
        ...(aggregator ? { aggregator } : {}),
      }),
  );
}

/**
 * Buckets fine enough to read a p50 and a p99 back from the histogram (a step's share of a chat
 * ack, from 0.1 ms to 30 s, so a starved run's queues are still measured): bench/chat reads
 * them, interpolating within a bucket.
 */
export const STEP_BUCKETS_S = [
  0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075,
  0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5, 5, 10, 30,
];

export function histogram<L extends string>(
  name: string,
  help: string,
  labelNames: readonly L[] = [],
  buckets: number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
): Histogram<L> {
  return once(name, (registers) => new Histogram({ name, help, labelNames, buckets, registers }));
}

export interface RenderedMetrics {
  contentType: string;
  body: string;
}

let source: (() => Promise<RenderedMetrics>) | null = null;

/**
 * Where this thread's /metrics comes from when its own registry is not the whole process: prom-client
 * registries are per thread, so in threaded standalone mode (app/supervisor.ts) the edge's /metrics
 * asks the supervisor, which aggregates every thread's registry. null: this thread's registry.
 */
export function renderMetricsWith(render: (() => Promise<RenderedMetrics>) | null): void {
  source = render;
}

export async function renderMetrics(): Promise<RenderedMetrics> {
  if (source) return source();
  const reg = metricsRegistry();
  return { contentType: reg.contentType, body: await reg.metrics() };
}
