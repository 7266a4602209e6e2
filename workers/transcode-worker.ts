/**
 * The worker role's transcode consumer: takes `transcode` jobs, runs the pipeline, records
 * the outcome through the uploads module's track records (track-records.ts: the control plane
 * owns the tracks table) and reports progress on the bus (`tracks.<id>.progress`).
 *
 * Outcomes:
 * - ready: outputs published, then the track recorded ready in one statement;
 * - a rejected upload (not audio, corrupt, too long...): the track fails with the reason,
 *   its source is deleted, the job is acked (retrying cannot help);
 * - any other error: retried with backoff; on the last attempt the track fails with a
 *   generic reason (details stay in the log) and the job becomes a dead letter;
 * - the job taken away (stop without drain, lease lost): ffmpeg is killed and nothing more
 *   is written; the next delivery redoes it into the same keys.
 * A delivery of a job whose track is already ready from the same source does nothing, so a
 * redelivered job completes once. When no control plane answers, the delivery fails before
 * anything more is written and the queue redelivers the job later: the ready record is one
 * call, and a rejected source is deleted only once its track no longer points at it.
 */
import { z } from 'zod';
import {
  TRANSCODE_QUEUE,
  type TrackProgressEvent,
  traceContextSchema,
  trackProgressSubject,
  transcodeJobSchema,
} from '../common/contracts/index.js';
import {
  contextOf,
  counter,
  gauge,
  histogram,
  inSpan,
  type Logger,
  SpanKind,
  tracingEnabled,
} from '../common/index.js';
import {
  type BlobStorage,
  type EventBus,
  type JobConsumer,
  type JobContext,
  type JobQueue,
  UnrecoverableJobError,
  watchJobQueue,
} from '../common/ports/index.js';
import {
  AudioRejectedError,
  type Progress,
  type TranscodeResult,
  transcodeTrack,
  unpublish,
} from './pipeline/index.js';
import { trackRecordsOverBus } from './track-records.js';

interface TranscodeWorkerOptions {
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
  /** Minimum time between two progress reports of one job (bus and track record). */
  progressIntervalMs?: number;
}

/** Only the trace of a job (the whole job is parsed, naming a bad field, by the transcode itself). */
const tracedJobSchema = z.object({ trace: traceContextSchema });

export interface TranscodeWorker {
  close(): Promise<void>;
}

/** The track a delivery works on. */
interface Track {
  id: number;
  ownerId: number;
}

const jobsTotal = counter('veza_transcode_jobs_total', 'Transcode deliveries by outcome', ['outcome']);
const inFlight = gauge('veza_transcode_in_flight', 'Transcode jobs running in this process');
/**
 * The pipeline's stages (download, probe, loudness, renditions, waveform, cover, publish) and
 * the worker's own steps around them: `claim` (finding the track and marking it processing,
 * before the `processing` notification) and `record` (the last progress write and the ready
 * record, before the `ready` one).
 */
const stageSeconds = histogram(
  'veza_transcode_stage_seconds',
  'Time spent per transcode step',
  ['stage'],
  [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
);

const RETRY_FAILURE_REASON = 'processing failed repeatedly; please upload the file again';

export function startTranscodeWorker(options: TranscodeWorkerOptions): TranscodeWorker {
  const { blobs, bus, log } = options;
  const records = trackRecordsOverBus(bus);

  async function publishEvent(event: TrackProgressEvent): Promise<void> {
    try {
      await bus.publish(trackProgressSubject(event.trackId), event);
    } catch (error) {
      // Progress is informational: a bus hiccup must not fail the transcode.
      log.warn({ err: error, trackId: event.trackId }, 'could not publish track progress');
    }
  }

  /**
   * Fails the track, then tells its owner. With `dropSource` the track stops pointing at the
   * source, which is deleted before the event goes out: a rejected upload is kept by nobody,
   * and a crash in between leaves an unreferenced blob, never a track pointing at nothing.
   */
  async function fail(track: Track, reason: string, dropSource?: string): Promise<void> {
    await records.recordFailed({ trackId: track.id, reason, dropSource: dropSource !== undefined });
    if (dropSource !== undefined) {
      await blobs
        .delete(dropSource)
        .catch((error: unknown) =>
          log.warn({ err: error, trackId: track.id }, 'could not delete a rejected source'),
        );
    }
    await publishEvent({
      trackId: track.id,
      ownerId: track.ownerId,
      status: 'failed',
      progress: 0,
      failureReason: reason,
    });
  }

  async function recordReady(track: Track, result: TranscodeResult) {
    const { metadata } = result;
    const { outcome } = await records.recordReady({
      trackId: track.id,
      metadata: {
        formatName: metadata.formatName,
        durationS: metadata.durationS,
        codec: metadata.codec,
        bitrate: metadata.bitrate,
        sampleRate: metadata.sampleRate,
        channels: metadata.channels,
      },
      inputLufs: result.loudness?.inputI ?? null,
      renditions: result.renditions.map(({ format, codec, bitrate, key, url }) => ({
        format,
        codec,
        bitrate,
        key,
        url,
      })),
      waveformKey: result.waveformKey,
      coverKey: result.coverKey,
      version: result.version,
      source: { sha256: result.source.sha256, size: result.source.size },
    });
    return outcome;
  }

  function progressReporter(track: Track, signal: AbortSignal) {
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
          await records
            .recordProgress({ trackId: track.id, percent: progress.percent })
            .catch((error: unknown) =>
              log.warn({ err: error, trackId: track.id }, 'could not record progress'),
            );
          await publishEvent({
            trackId: track.id,
            ownerId: track.ownerId,
            status: 'processing',
            progress: progress.percent,
            stage: progress.stage,
          });
        });
      },
      settled: () => writes,
    };
  }

  /** With tracing on, a job queued inside a trace (the upload's last request) runs in a span of it. */
  function handle(payload: unknown, context: JobContext): Promise<void> {
    const carrier = tracingEnabled() ? tracedJobSchema.safeParse(payload).data?.trace : undefined;
    if (!carrier) return run(payload, context);
    return inSpan(
      `process ${TRANSCODE_QUEUE}`,
      SpanKind.CONSUMER,
      () => run(payload, context),
      {
        'messaging.system': 'veza-jobs',
        'messaging.destination.name': TRANSCODE_QUEUE,
        'veza.job_id': context.jobId,
      },
      contextOf(carrier),
    );
  }

  async function run(payload: unknown, context: JobContext): Promise<void> {
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
    const claimStarted = performance.now();
    const found = await records.trackToProcess({ trackId: job.trackId, sourceKey: job.sourceKey });
    switch (found.state) {
      case 'missing':
        jobLog.warn('track no longer exists; nothing to transcode');
        return 'stale';
      case 'other-source':
        jobLog.warn('the track has another source now; this job is stale');
        return 'stale';
      case 'ready':
        jobLog.info('track already transcoded from this source');
        return 'duplicate';
    }
    const track: Track = { id: job.trackId, ownerId: found.ownerId };

    await records.markProcessing({ trackId: track.id });
    const claimMs = performance.now() - claimStarted;
    await publishEvent({ trackId: track.id, ownerId: track.ownerId, status: 'processing', progress: 0 });
    const progress = progressReporter(track, context.signal);

    let result: TranscodeResult;
    try {
      result = await transcodeTrack({
        blobs,
        trackId: track.id,
        sourceKey: job.sourceKey,
        expectedSha256: found.sourceChecksum,
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

    const recordStarted = performance.now();
    await progress.settled();
    if (context.signal.aborted) throw context.signal.reason;
    const recorded = await recordReady(track, result);
    const recordMs = performance.now() - recordStarted;
    if (recorded !== 'recorded') {
      // Deleted while we worked: what we published belongs to nobody.
      if (recorded === 'missing') await unpublish(blobs, result);
      jobLog.warn('track changed while transcoding; result not recorded');
      return 'stale';
    }
    const steps = { claim: Math.round(claimMs), ...result.timingsMs, record: Math.round(recordMs) };
    jobLog.info(
      {
        durationS: result.metadata.durationS,
        inputLufs: result.loudness?.inputI ?? null,
        normalisation: result.normalisation,
        timingsMs: steps,
      },
      'track transcoded',
    );
    for (const [stage, ms] of Object.entries(steps)) stageSeconds.observe({ stage }, ms / 1000);
    await publishEvent({ trackId: track.id, ownerId: track.ownerId, status: 'ready', progress: 100 });
    return 'ready';
  }

  const consumer: JobConsumer = options.jobs.consume(TRANSCODE_QUEUE, handle, {
    concurrency: options.concurrency,
    maxDeliveries: options.maxDeliveries ?? 3,
    backoffMs: options.backoffMs ?? [10_000, 60_000],
  });
  const unwatch = watchJobQueue(options.jobs, TRANSCODE_QUEUE);

  return {
    async close() {
      unwatch();
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
