/**
 * The capacity model's figures (README, "Capacity plan"), measured on this project's reference
 * machine (2 cores, mediasoup 3.12.16, Opus at 50 packets/s): about 10 µs of worker CPU per
 * forwarded packet, so one listener costs 0.05% of a core; 1,000 listeners per worker keep it at
 * half a core, the headroom that held delay p99 under 60 ms in the fan-out benchmark.
 */
export const LISTENERS_PER_WORKER = 1000;

/** MEDIA_NODE_MAX_LISTENERS when the operator did not set it: what a node of this size holds. */
export function defaultMaxListeners(workers: number): number {
  return Math.max(1, workers) * LISTENERS_PER_WORKER;
}
