/**
 * Recordings of live streams and their replays: what happens to a recorded stream's recording
 * once it ends (lifecycle.ts), and the replay rpcs of StreamService (service.ts). StartStream
 * prepares the recording (streams module); the media node records; the worker role joins.
 */
import type { Sql } from '../../common/db/index.js';
import type { Logger } from '../../common/index.js';
import type { BlobStorage, EventBus, JobQueue } from '../../common/ports/index.js';
import { startRecordingLifecycle } from './lifecycle.js';
import { createReplayRpcs, type ReplayRpcs } from './service.js';
import { type ReplaySweepOptions, startReplaySweep } from './sweep.js';

export { beginReplay, recordJoin, resumeReplay } from './lifecycle.js';
export { type ReplaySweep, startReplaySweep } from './sweep.js';

interface RecordingsModuleDeps {
  sql: Sql;
  ports: { blobs: BlobStorage; jobs: JobQueue; bus: EventBus };
  log: Logger;
  /** The replay sweep's schedule (RECORDING_SWEEP_INTERVAL_S, RECORDING_SWEEP_GRACE_S). */
  sweep: ReplaySweepOptions;
}

interface RecordingsModule {
  /** Merged into the StreamService binding. */
  rpcs: ReplayRpcs;
  close(): Promise<void>;
}

export function startRecordingsModule(deps: RecordingsModuleDeps): RecordingsModule {
  const log = deps.log.child({ component: 'recordings' });
  const lifecycle = { sql: deps.sql, ...deps.ports, log };
  const subscriptions = startRecordingLifecycle(lifecycle);
  const sweep = startReplaySweep(lifecycle, deps.sweep);
  return {
    rpcs: createReplayRpcs({ sql: deps.sql, blobs: deps.ports.blobs }),
    async close() {
      for (const subscription of subscriptions) subscription.unsubscribe();
      await sweep.stop();
    },
  };
}
