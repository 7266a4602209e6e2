/**
 * The worker role: durable job consumers: the transcode worker and the analytics roll-ups. Workers hold no database: they take jobs from the
 * queue and report through the bus to the modules that own the data.
 */

import type { Config, Logger } from '../common/index.js';
import type { Ports } from '../common/ports/index.js';
import { startRollupWorker } from './analytics-rollup.js';
import { checkFfmpeg } from './ffmpeg.js';
import { startTranscodeWorker } from './transcode-worker.js';

export { computeRollup, type RollupWorker, rollUp, startRollupWorker } from './analytics-rollup.js';
export { transcodeTrack } from './pipeline/index.js';
export { startTranscodeWorker, type TranscodeWorker } from './transcode-worker.js';

interface StartWorkersOptions {
  config: Config;
  ports: Pick<Ports, 'jobs' | 'blobs' | 'bus'>;
  log: Logger;
  /** Longest audio accepted, in seconds (UPLOAD_MAX_DURATION_S by default). */
  maxDurationS?: number;
  /** How long close() lets jobs in flight finish before releasing them for redelivery. */
  shutdownGraceMs?: number;
}

export interface Workers {
  /** Finishes jobs in flight within the grace period, releases the rest for redelivery. */
  close(): Promise<void>;
}

export async function startWorkers(options: StartWorkersOptions): Promise<Workers> {
  const log = options.log.child({ role: 'worker' });
  const { version } = await checkFfmpeg();
  const transcoder = startTranscodeWorker({
    jobs: options.ports.jobs,
    blobs: options.ports.blobs,
    bus: options.ports.bus,
    log: log.child({ component: 'transcode' }),
    concurrency: options.config.WORKER_CONCURRENCY,
    maxDurationS: options.maxDurationS ?? options.config.UPLOAD_MAX_DURATION_S,
    ...(options.shutdownGraceMs === undefined ? {} : { shutdownGraceMs: options.shutdownGraceMs }),
  });
  const rollups = startRollupWorker({
    jobs: options.ports.jobs,
    bus: options.ports.bus,
    log: log.child({ component: 'analytics-rollup' }),
  });
  log.info(
    {
      concurrency: options.config.WORKER_CONCURRENCY,
      maxDurationS: options.maxDurationS ?? options.config.UPLOAD_MAX_DURATION_S,
      ffmpeg: version,
    },
    'workers started',
  );
  return {
    async close() {
      await Promise.all([transcoder.close(), rollups.close()]);
    },
  };
}
