/**
 * The gRPC load process: K calls in flight on one channel for a duration (or up to a number of
 * requests), recording each call's latency, and what the load generator itself used (its CPU and
 * its event-loop delay), so a figure it limited can be told apart. Forked by the grpc scenario.
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { serveParent } from '../lib/ipc.js';
import { LogHistogram } from '../lib/stats.js';
import { type CallSpec, caller } from './calls.js';

export interface LoadParams {
  spec: CallSpec;
  concurrency: number;
  durationS: number;
  /** Stop after this many measured requests (0: no limit). */
  maxRequests: number;
  warmupS: number;
}

async function load(params: LoadParams) {
  const client = caller(params.spec);
  const latencies = new LogHistogram();
  const errors = new Map<string, number>();
  let completed = 0;
  try {
    // Warm-up: connection, JIT, caches; not measured.
    const warmupEnd = performance.now() + params.warmupS * 1000;
    await Promise.all(
      Array.from({ length: params.concurrency }, async () => {
        while (performance.now() < warmupEnd) await client.call().catch(() => undefined);
      }),
    );
    // A late callback here delays every measured call: the generator, not the server, is slow then.
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    const cpu0 = process.cpuUsage();
    const started = performance.now();
    const end = started + params.durationS * 1000;
    let issued = 0;
    await Promise.all(
      Array.from({ length: params.concurrency }, async () => {
        while (performance.now() < end && (params.maxRequests === 0 || issued < params.maxRequests)) {
          issued++;
          const t = performance.now();
          try {
            await client.call();
            latencies.add(performance.now() - t);
            completed++;
          } catch (error) {
            const key = error instanceof Error ? error.message.slice(0, 120) : String(error);
            errors.set(key, (errors.get(key) ?? 0) + 1);
          }
        }
      }),
    );
    const elapsedS = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpu0);
    loopDelay.disable();
    return {
      completed,
      failed: [...errors.values()].reduce((a, b) => a + b, 0),
      errors: [...errors.entries()].slice(0, 5).map(([message, count]) => `${count}x ${message}`),
      elapsedS,
      latency: latencies.toJSON(),
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      loopDelayMs: {
        p50: loopDelay.percentile(50) / 1e6,
        p99: loopDelay.percentile(99) / 1e6,
        max: loopDelay.max / 1e6,
      },
    };
  } finally {
    client.close();
  }
}

serveParent({ load: (params) => load(params as LoadParams) }, () => undefined);
