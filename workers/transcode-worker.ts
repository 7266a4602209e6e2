/**
 * The worker role's transcode consumer: takes `transcode` jobs, runs the pipeline, records
 * the outcome on the track row and reports progress on the bus (`tracks.<id>.progress`).
 *
 * Outcomes:
 * - ready: outputs published, then the row updated in one statement;
 * - a rejected upload (not audio, corrupt, too long...): the track fails with the reason,
 *   its source is deleted, the job is acked (retrying cannot help);
 * - any other error: retried with backoff; on the last attempt the track fails with a
 *   generic reason (details stay in the log) and the job becomes a dead letter;
 * - the job taken away (stop without drain, lease lost): ffmpeg is killed and nothing more
 *   is written; the next delivery redoes it into the same keys.
 * A delivery of a job whose track is already ready from the same source does nothing, so a
 * redelivered job completes once.
 */
import { z } from 'zod';
import {
  TRANSCODE_QUEUE,
  type TrackProgressEvent,
  type TranscodeJob,
  trackProgressSubject,
  transcodeJobId,
  transcodeJobSchema,
} from '../common/contracts/index.js';
import type { Sql } from '../common/db/index.js';
import { counter, gauge, histogram, type Logger } from '../common/index.js';
import {
  type BlobStorage,
  type EventBus,
  type JobConsumer,
  type JobContext,
  type JobQueue,
  UnrecoverableJobError,
} from '../common/ports/index.js';
import {
  AudioRejectedError,
  type Progress,
  type TranscodeResult,
  transcodeTrack,
  unpublish,
} from './pipeline/index.js';

export interface TranscodeWorkerOptions {
  sql: Sql;
  jobs: JobQueue;
  blobs: BlobStorage;
  bus: EventBus;
  log: Logger;
  concurrency: number;
  maxDurationS: number;
  maxDeliveries?: number;
  backoffMs?: number[];
  /** How long close() lets jobs in flight finish before releasing them. */
  shutdownGraceMs?: number;
  waveformPoints?: number;
  tempDir?: string;
  /** Minimum time between two progress reports of one job (bus and row). */
  progressIntervalMs?: number;
}

export interface TranscodeWorker {
  close(): Promise<void>;
}

interface TrackRow {
  id: number;
  owner_id: number;
  status: string;
  source_key: string | null;
  source_checksum: string | null;
}

const jobsTotal = counter('veza_transcode_jobs_total', 'Transcode deliveries by outcome', ['outcome']);
const inFlight = gauge('veza_transcode_in_flight', 'Transcode jobs running in this process');
const stageSeconds = histogram(
  'veza_transcode_stage_seconds',
  'Time spent per pipeline stage',
  ['stage'],
  [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
);

const RETRY_FAILURE_REASON = 'processing failed repeatedly; please upload the file again';

export function startTranscodeWorker(options: TranscodeWorkerOptions): TranscodeWorker {
  const { sql, blobs, bus, log } = options;

  async function publishEvent(event: TrackProgressEvent): Promise<void> {
    try {
      await bus.publish(trackProgressSubject(event.trackId), event);
    } catch (error) {
      // Progress is informational: a bus hiccup must not fail the transcode.
      log.warn({ err: error, trackId: event.trackId }, 'could not publish track progress');
    }
  }

  /**
   * Fails the track, then tells its owner. With `dropSource` the row stops pointing at the
   * source, which is deleted before the event goes out: a rejected upload is kept by nobody,
   * and a crash in between leaves an unreferenced blob, never a row pointing at nothing.
   */
  async function fail(track: TrackRow, reason: string, dropSource?: string): Promise<void> {
    await sql`
      update tracks set
        status = 'failed',
        failure_reason = ${reason},
        source_key = case when ${dropSource !== undefined} then null else source_key end,
        updated_at = now()
      where id = ${track.id} and status <> 'ready'`;
    if (dropSource !== undefined) {
      await blobs
        .delete(dropSource)
        .catch((error: unknown) =>
          log.warn({ err: error, trackId: track.id }, 'could not delete a rejected source'),
        );
    }
    await publishEvent({
      trackId: track.id,
      ownerId: track.owner_id,
      status: 'failed',
      progress: 0,
      failureReason: reason,
    });
  }

  async function recordReady(track: TrackRow, result: TranscodeResult): Promise<boolean> {
    const { metadata } = result;
    const renditions = result.renditions.map(({ format, codec, bitrate, key, url }) => ({
      format,
      codec,
      bitrate,
      key,
      url,
    }));
    const rows = await sql`
      update tracks set
        status = 'ready',
        progress = 100,
        failure_reason = null,
        file_format = ${metadata.formatName},
        duration_s = ${metadata.durationS},
        codec = ${metadata.codec},
        bitrate = ${metadata.bitrate},
        sample_rate = ${metadata.sampleRate},
        channels = ${metadata.channels},
        input_lufs = ${result.loudness?.inputI ?? null},
        renditions = ${sql.json(renditions)},
        waveform_key = ${result.waveformKey},
        cover_key = ${result.coverKey},
        output_version = ${result.version},
        source_checksum = coalesce(source_checksum, ${result.source.sha256}),
        source_size = coalesce(source_size, ${result.source.size}),
        updated_at = now()
      where id = ${track.id} and status = 'processing'
      returning id`;
    return rows.length > 0;
  }

  function progressReporter(track: TrackRow, signal: AbortSignal) {
    const interval = options.progressIntervalMs ?? 250;
    let lastAt = 0;
    let writes: Promise<void> = Promise.resolve();
    return {
      report(progress: Progress) {
        const now = performance.now();
        if (now - lastAt < interval || signal.aborted) return;
        lastAt = now;
        // Chained, so reports land in order and the final record can wait for them.
        writes = writes.then(async () => {
          await sql`
            update tracks set progress = ${progress.percent}, updated_at = now()
            where id = ${track.id} and status = 'processing'`.catch((error: unknown) =>
            log.warn({ err: error, trackId: track.id }, 'could not record progress'),
          );
          await publishEvent({
            trackId: track.id,
            ownerId: track.owner_id,
            status: 'processing',
            progress: progress.percent,
            stage: progress.stage,
          });
        });
      },
      settled: () => writes,
    };
  }

  async function handle(payload: unknown, context: JobContext): Promise<void> {
    inFlight.inc();
    try {
      jobsTotal.inc({ outcome: await transcode(payload, context) });
    } catch (error) {
      jobsTotal.inc({ outcome: context.signal.aborted ? 'released' : 'error' });
      throw error;
    } finally {
      inFlight.dec();
    }
  }

  /** Resolves with the outcome for the metrics; throws to have the job retried. */
  async function transcode(payload: unknown, context: JobContext): Promise<string> {
    const parsed = transcodeJobSchema.safeParse(payload);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new UnrecoverableJobError(
        `payload.${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`,
      );
    }
    const job = parsed.data;
    const jobLog = log.child({ trackId: job.trackId, jobId: context.jobId, attempt: context.attempt });
    const [track] = await sql<TrackRow[]>`
      select id, owner_id, status, source_key, source_checksum from tracks where id = ${job.trackId}`;
    if (!track) {
      jobLog.warn('track no longer exists; nothing to transcode');
      return 'stale';
    }
    if (track.source_key !== job.sourceKey) {
      jobLog.warn('the track has another source now; this job is stale');
      return 'stale';
    }
    if (track.status === 'ready') {
      jobLog.info('track already transcoded from this source');
      return 'duplicate';
    }

    await sql`
      update tracks set status = 'processing', progress = 0, failure_reason = null, updated_at = now()
      where id = ${track.id} and status <> 'ready'`;
    await publishEvent({ trackId: track.id, ownerId: track.owner_id, status: 'processing', progress: 0 });
    const progress = progressReporter(track, context.signal);

    let result: TranscodeResult;
    try {
      result = await transcodeTrack({
        blobs,
        trackId: track.id,
        sourceKey: job.sourceKey,
        expectedSha256: track.source_checksum,
        maxDurationS: options.maxDurationS,
        ...(options.waveformPoints ? { waveformPoints: options.waveformPoints } : {}),
        ...(options.tempDir ? { tempDir: options.tempDir } : {}),
        onProgress: (value) => progress.report(value),
        signal: context.signal,
        log: jobLog,
      });
    } catch (error) {
      await progress.settled();
      if (context.signal.aborted) throw error;
      if (error instanceof AudioRejectedError) {
        jobLog.info({ reason: error.message }, 'upload rejected');
        await fail(track, error.message, job.sourceKey);
        return 'rejected';
      }
      jobLog.error({ err: error }, 'transcode failed');
      if (context.attempt >= context.maxDeliveries) await fail(track, RETRY_FAILURE_REASON);
      throw error;
    }

    await progress.settled();
    if (context.signal.aborted) throw context.signal.reason;
    if (!(await recordReady(track, result))) {
      const [still] = await sql`select 1 from tracks where id = ${track.id}`;
      // Deleted while we worked: what we published belongs to nobody.
      if (!still) await unpublish(blobs, result);
      jobLog.warn('track changed while transcoding; result not recorded');
      return 'stale';
    }
    jobLog.info(
      {
        durationS: result.metadata.durationS,
        inputLufs: result.loudness?.inputI ?? null,
        normalisation: result.normalisation,
        timingsMs: result.timingsMs,
      },
      'track transcoded',
    );
    for (const [stage, ms] of Object.entries(result.timingsMs)) stageSeconds.observe({ stage }, ms / 1000);
    await publishEvent({ trackId: track.id, ownerId: track.owner_id, status: 'ready', progress: 100 });
    return 'ready';
  }

  const consumer: JobConsumer = options.jobs.consume(TRANSCODE_QUEUE, handle, {
    concurrency: options.concurrency,
    maxDeliveries: options.maxDeliveries ?? 3,
    backoffMs: options.backoffMs ?? [10_000, 60_000],
  });

  return {
    async close() {
      const grace = options.shutdownGraceMs ?? 20_000;
      let timer: NodeJS.Timeout | undefined;
      const drained = consumer.stop({ drain: true });
      const timedOut = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), grace);
      });
      const outcome = await Promise.race([drained.then(() => 'drained' as const), timedOut]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        log.warn({ graceMs: grace }, 'jobs still running at shutdown; releasing them for redelivery');
        await consumer.stop({ drain: false });
        await drained;
      }
    },
  };
}
