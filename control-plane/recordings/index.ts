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

export { beginReplay, recordJoin } from './lifecycle.js';

interface RecordingsModuleDeps {
  sql: Sql;
  ports: { blobs: BlobStorage; jobs: JobQueue; bus: EventBus };
  log: Logger;
}

interface RecordingsModule {
  /** Merged into the StreamService binding. */
  rpcs: ReplayRpcs;
  close(): void;
}

export function startRecordingsModule(deps: RecordingsModuleDeps): RecordingsModule {
  const log = deps.log.child({ component: 'recordings' });
  const subscriptions = startRecordingLifecycle({ sql: deps.sql, ...deps.ports, log });
  return {
    rpcs: createReplayRpcs({ sql: deps.sql, blobs: deps.ports.blobs }),
    close() {
      for (const subscription of subscriptions) subscription.unsubscribe();
    },
  };
}
