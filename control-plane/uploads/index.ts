/**
 * Uploads and playback of tracks: the upload path shared by REST (through the edge) and
 * gRPC, the StreamService rpcs for it, the track records the transcode worker reads and
 * writes over the bus, and the notifications that tell uploaders how processing ended.
 * startUploadsModule wires them for the control plane.
 */

import type { Sql } from '../../common/db/index.js';
import type { Config, Logger } from '../../common/index.js';
import type { BlobStorage, EventBus, JobQueue } from '../../common/ports/index.js';
import type { Analytics } from '../analytics/index.js';
import type { Notifier } from '../notifications/index.js';
import { startUploadNotifications } from './progress.js';
import { createUploadRpcs, type UploadRpcs } from './service.js';
import { serveTrackRecords } from './track-records.js';
import { createUploads, type Uploads, type UploadsDeps } from './uploads.js';

export { serveTrackRecords } from './track-records.js';
export { createUploads, sourceKeyOf } from './uploads.js';

export interface UploadsModuleDeps {
  config: Config;
  sql: Sql;
  ports: { blobs: BlobStorage; jobs: JobQueue; bus: EventBus };
  analytics: Analytics;
  notifier: Notifier;
  log: Logger;
  /** Test and tuning knobs of the upload path (expiry, sweep period). */
  options?: Pick<UploadsDeps, 'expiryMs' | 'sweepEveryMs'>;
}

interface UploadsModule {
  uploads: Uploads;
  /** Merged into the StreamService binding. */
  rpcs: UploadRpcs;
  /** Stops the sweeper, the progress listener and the track records; call after the gRPC server closed. */
  close(): Promise<void>;
}

export function startUploadsModule(deps: UploadsModuleDeps): UploadsModule {
  const log = deps.log.child({ component: 'uploads' });
  const uploads = createUploads({
    config: deps.config,
    sql: deps.sql,
    blobs: deps.ports.blobs,
    jobs: deps.ports.jobs,
    analytics: deps.analytics,
    notifier: deps.notifier,
    log,
    ...deps.options,
  });
  const records = serveTrackRecords({ sql: deps.sql, bus: deps.ports.bus });
  const listener = startUploadNotifications({
    sql: deps.sql,
    bus: deps.ports.bus,
    notifier: deps.notifier,
    log,
  });
  // Uploads left unfinished by a previous run expire now rather than at the first tick.
  void uploads.sweep();
  return {
    uploads,
    rpcs: createUploadRpcs({ uploads, blobs: deps.ports.blobs }),
    async close() {
      records.unsubscribe();
      listener.unsubscribe();
      await uploads.close();
    },
  };
}
