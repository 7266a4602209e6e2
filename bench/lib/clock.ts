/**
 * Milliseconds on CLOCK_MONOTONIC, the clock every process on the machine shares, without the
 * BigInt process.hrtime.bigint() allocates: performance.now() runs on the same clock from a
 * per-process origin, so one offset read at load time converts it. Cheap enough to call per
 * packet in a load generator receiving 50,000 packets per second.
 */
import { performance } from 'node:perf_hooks';

const offset = Number(process.hrtime.bigint()) / 1e6 - performance.now();

export function monotonicMs(): number {
  return performance.now() + offset;
}
