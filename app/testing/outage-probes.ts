/**
 * What the dependency-outage tests read: a metric's current value in this process, and a REST
 * call's status, headers, body and how long it took (a refused write must be fast, not a hang).
 */
import { metricsRegistry } from '../../common/index.js';

export async function metricValue(name: string, labels: Record<string, string>): Promise<number | undefined> {
  const data = await metricsRegistry().getSingleMetric(name)?.get();
  return data?.values.find((value) =>
    Object.entries(labels).every(([key, wanted]) => String(value.labels[key] ?? '') === wanted),
  )?.value;
}

export interface TimedAnswer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
  ms: number;
}

/** A JSON call to the edge at `base`, timed; bounded at 15 s so a hang fails the test. */
export async function timedCall(
  base: string,
  method: string,
  route: string,
  options: { token?: string; body?: unknown } = {},
): Promise<TimedAnswer> {
  const started = performance.now();
  const response = await fetch(`${base}${route}`, {
    method,
    headers: {
      ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers,
    body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
    ms: performance.now() - started,
  };
}
