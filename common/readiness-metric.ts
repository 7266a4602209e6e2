/**
 * `veza_ready`: what /readyz would answer, as a metric. Prometheus scrapes /metrics, not /readyz,
 * so without it an alert could see a process up but never that it stopped being ready (its
 * control plane, database or bus gone). Probed at scrape time with the same check /readyz runs.
 */
import { gauge } from './metrics.js';

export type ReadinessEndpoint = 'edge' | 'ops';

const probes = new Map<ReadinessEndpoint, () => Promise<boolean>>();

gauge(
  'veza_ready',
  '1 while this process answers ready on /readyz, 0 otherwise, by endpoint (the edge, or the ops port)',
  ['endpoint'],
  {
    async collect() {
      this.reset();
      await Promise.all(
        [...probes].map(async ([endpoint, probe]) => {
          const ready = await probe().catch(() => false);
          this.set({ endpoint }, ready ? 1 : 0);
        }),
      );
    },
  },
);

/** Reports `isReady` as `veza_ready{endpoint}` until the returned function is called (the newest registration wins). */
export function reportReadiness(endpoint: ReadinessEndpoint, isReady: () => Promise<boolean>): () => void {
  probes.set(endpoint, isReady);
  return () => {
    if (probes.get(endpoint) === isReady) probes.delete(endpoint);
  };
}
