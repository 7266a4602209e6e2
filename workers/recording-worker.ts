/**
 * The worker role's recording consumer: takes `recording` jobs (queued when a recorded stream
 * ended), waits until every recorder that wrote for the stream has stored its last segment (or
 * RECORDING_SETTLE_S after the end, for a node that died without saying so), joins the segments
 * on the wall clock's timeline and reports the outcome to the control plane, which queues the
 * transcode of the joined source or, for a stream without any audio, drops the replay. A stream
 * that never had audio leaves nothing: its prefix is deleted before the report.
 */
import {
  RECORDING_JOINED_SUBJECT,
  RECORDING_QUEUE,
  type RecordingJoined,
  recordingJobSchema,
  recordingPrefix,
  recordingWritersPrefix,
  VezaError,
} from '../common/contracts/index.js';
import { counter, type Logger } from '../common/index.js';
import {
  type BlobStorage,
  type EventBus,
  type JobConsumer,
  type JobContext,
  type JobQueue,
  UnrecoverableJobError,
} from '../common/ports/index.js';
import { joinRecording } from './recording-join.js';

interface RecordingWorkerOptions {
  jobs: JobQueue;
  blobs: BlobStorage;
  bus: EventBus;
  log: Logger;
  concurrency: number;
  /** Longest wait for recorders that never said they were done, from the stream's end. */
  settleMs: number;
  maxDeliveries?: number;
  backoffMs?: number[];
  tempDir?: string;
}

export interface RecordingWorker {
  close(): Promise<void>;
}

const joins = counter('veza_recording_joins_total', 'Recording jobs by outcome', ['outcome']);

/** Every writer that opened has said done; false while one is still writing. */
async function writersDone(blobs: BlobStorage, streamId: number): Promise<boolean> {
  const keys = new Set((await blobs.list(recordingWritersPrefix(streamId))).map((blob) => blob.key));
  for (const key of keys) {
    if (key.endsWith('.open') && !keys.has(`${key.slice(0, -'.open'.length)}.done`)) return false;
  }
  return true;
}

export function startRecordingWorker(options: RecordingWorkerOptions): RecordingWorker {
  const { blobs, bus, log } = options;

  async function settle(streamId: number, endedAt: Date, signal: AbortSignal): Promise<void> {
    const deadline = endedAt.getTime() + options.settleMs;
    while (!signal.aborted && Date.now() < deadline) {
      if (await writersDone(blobs, streamId)) return;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    if (!signal.aborted) log.warn({ streamId }, 'a recorder never said it was done; joining what it stored');
  }

  async function report(joined: RecordingJoined): Promise<'recorded' | 'missing'> {
    const reply = (await bus.request(RECORDING_JOINED_SUBJECT, joined)) as { outcome?: unknown } | null;
    if (reply?.outcome !== 'recorded' && reply?.outcome !== 'missing') {
      throw new VezaError('internal', 'malformed reply from the recordings module');
    }
    return reply.outcome;
  }

  async function handle(payload: unknown, context: JobContext): Promise<void> {
    const parsed = recordingJobSchema.safeParse(payload);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      joins.inc({ outcome: 'invalid' });
      throw new UnrecoverableJobError(
        `payload.${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`,
      );
    }
    const job = parsed.data;
    const jobLog = log.child({ streamId: job.streamId, trackId: job.trackId, attempt: context.attempt });
    await settle(job.streamId, new Date(job.endedAt), context.signal);
    if (context.signal.aborted) throw new Error('recording job released');
    const joined = await joinRecording({
      blobs,
      streamId: job.streamId,
      log: jobLog,
      signal: context.signal,
      ...(options.tempDir ? { tempDir: options.tempDir } : {}),
    });
    if (!joined) {
      await blobs.deletePrefix(recordingPrefix(job.streamId));
      await report({ outcome: 'no_audio', streamId: job.streamId, trackId: job.trackId });
      joins.inc({ outcome: 'no_audio' });
      jobLog.info('the stream never had audio: nothing to replay');
      return;
    }
    const outcome = await report({
      outcome: 'joined',
      streamId: job.streamId,
      trackId: job.trackId,
      recordingStartedAt: new Date(joined.startedAtMs).toISOString(),
      durationS: joined.durationS,
      gapS: joined.gapS,
      sourceKey: joined.sourceKey,
    });
    if (outcome === 'missing') {
      // The replay was deleted meanwhile: what we stored belongs to nobody.
      await blobs.deletePrefix(recordingPrefix(job.streamId));
      joins.inc({ outcome: 'stale' });
      jobLog.warn('the replay was deleted while its recording was joined');
      return;
    }
    joins.inc({ outcome: 'joined' });
    jobLog.info(
      { durationS: joined.durationS, gapS: joined.gapS, gaps: joined.gaps.length },
      'recording joined',
    );
  }

  const consumer: JobConsumer = options.jobs.consume(RECORDING_QUEUE, handle, {
    concurrency: options.concurrency,
    maxDeliveries: options.maxDeliveries ?? 5,
    backoffMs: options.backoffMs ?? [5_000, 30_000, 120_000],
  });
  return {
    close: () => consumer.stop({ drain: false }),
  };
}
