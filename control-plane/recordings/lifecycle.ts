/**
 * A recording's life after its stream: when a recorded stream ends (`stream.ended`, which every
 * control plane hears; the conditional status change lets one act), its replay track is created,
 * private, and the durable `recording` job is queued for the worker role, which joins the
 * segments. The worker's report (`recordings.joined`) then either hands the joined source to the
 * transcode pipeline (loudness, renditions, HLS, waveform) or, for a stream that never had audio,
 * removes the track and everything under the stream's prefix, so nothing half-made stays.
 */
import {
  enqueueTranscode,
  RECORDING_JOINED_SUBJECT,
  RECORDING_QUEUE,
  type RecordingJob,
  type RecordingJoined,
  recordingJobId,
  recordingJoinedSchema,
  recordingPrefix,
  replaySourceKey,
  STREAM_ENDED,
  streamEndedEventSchema,
} from '../../common/contracts/index.js';
import type { Sql } from '../../common/db/index.js';
import { counter, type Logger } from '../../common/index.js';
import type { BlobStorage, EventBus, JobQueue, Subscription } from '../../common/ports/index.js';
import { parseInput } from '../parse-input.js';
import { markRecordingJoinQueued, moveRecordingStatus, streamRecordingOf } from '../streams/index.js';
import { createReplayTrack, deleteReplayTrack, recordReplaySource, replayTrackOf } from '../uploads/index.js';

export interface RecordingLifecycleDeps {
  sql: Sql;
  bus: EventBus;
  blobs: BlobStorage;
  jobs: JobQueue;
  log: Logger;
}

const replays = counter('veza_replays_total', 'Recorded streams by what became of their recording', [
  'outcome',
]);

/** Queues the join of a recorded stream that ended; does nothing for one already handled. */
export async function beginReplay(deps: RecordingLifecycleDeps, streamId: number): Promise<number | null> {
  const started = await deps.sql.begin(async (tx) => {
    const stream = await moveRecordingStatus(tx, streamId, ['recording'], 'processing');
    if (!stream) return null;
    const track = await createReplayTrack(tx, {
      streamId,
      ownerId: stream.owner_id,
      title: stream.title,
      description: stream.description,
      genre: stream.genre,
      sourceKey: replaySourceKey(streamId),
    });
    if (!track) return null;
    const job: RecordingJob = {
      streamId,
      trackId: track.id,
      ownerId: stream.owner_id,
      endedAt: (stream.ended_at ?? new Date()).toISOString(),
    };
    return job;
  });
  if (!started) return null;
  // After the commit: should this fail, the replay sweep queues it (the stream stays unmarked).
  await queueJoin(deps, started);
  deps.log.info({ streamId, trackId: started.trackId }, 'recording ended; its replay is being made');
  return started.trackId;
}

/**
 * Queues the join of a stream whose replay track exists and marks it queued; false when the
 * queue already held the job. The job's id names the stream, so a second enqueue (a retry, two
 * control planes, the sweep racing the event) is one job.
 */
async function queueJoin(deps: RecordingLifecycleDeps, job: RecordingJob): Promise<boolean> {
  const { duplicate } = await deps.jobs.enqueue(RECORDING_QUEUE, job, {
    jobId: recordingJobId(job.streamId),
  });
  await markRecordingJoinQueued(deps.sql, job.streamId);
  return !duplicate;
}

/**
 * Queues the join of a stream left 'processing' without it (its replay track was created, the
 * enqueue never happened); false when there is nothing to queue or the queue already held it.
 */
export async function resumeReplay(deps: RecordingLifecycleDeps, streamId: number): Promise<boolean> {
  const stream = await streamRecordingOf(deps.sql, streamId);
  if (stream?.recording_status !== 'processing') return false;
  const track = await replayTrackOf(deps.sql, streamId);
  if (!track) return false;
  return queueJoin(deps, {
    streamId,
    trackId: track.id,
    ownerId: stream.owner_id,
    endedAt: (stream.ended_at ?? new Date()).toISOString(),
  });
}

/** Applies the worker's report of a join. */
export async function recordJoin(
  deps: RecordingLifecycleDeps,
  report: RecordingJoined,
): Promise<{ outcome: 'recorded' | 'missing' }> {
  const { sql, blobs, jobs, log } = deps;
  if (report.outcome === 'no_audio') {
    await sql.begin(async (tx) => {
      await deleteReplayTrack(tx, report.trackId);
      await moveRecordingStatus(tx, report.streamId, ['processing'], 'no_audio');
    });
    await blobs.deletePrefix(recordingPrefix(report.streamId));
    replays.inc({ outcome: 'no_audio' });
    log.info({ streamId: report.streamId }, 'the stream never had audio: no replay');
    return { outcome: 'recorded' };
  }
  const recorded = await sql.begin(async (tx) => {
    const track = await replayTrackOf(tx, report.streamId);
    if (!track || track.id !== report.trackId) return false;
    await recordReplaySource(tx, track.id, {
      recordingStartedAt: new Date(report.recordingStartedAt),
      durationS: report.durationS,
    });
    await moveRecordingStatus(tx, report.streamId, ['processing'], 'ready');
    return true;
  });
  if (!recorded) return { outcome: 'missing' };
  await enqueueTranscode(jobs, { trackId: report.trackId, sourceKey: report.sourceKey });
  replays.inc({ outcome: 'joined' });
  log.info(
    { streamId: report.streamId, trackId: report.trackId, durationS: report.durationS, gapS: report.gapS },
    'recording joined; its replay is being transcoded',
  );
  return { outcome: 'recorded' };
}

export function startRecordingLifecycle(deps: RecordingLifecycleDeps): Subscription[] {
  const ended = deps.bus.subscribe(STREAM_ENDED, async (payload) => {
    const event = streamEndedEventSchema.safeParse(payload);
    if (!event.success) {
      deps.log.warn({ issues: event.error.issues }, 'malformed stream.ended event');
      return;
    }
    const streamId = event.data.stream_id;
    try {
      await beginReplay(deps, streamId);
    } catch (error) {
      deps.log.error({ err: error, streamId }, 'could not queue the replay of a recorded stream');
    }
  });
  const joined = deps.bus.respond(RECORDING_JOINED_SUBJECT, (payload) =>
    recordJoin(deps, parseInput(recordingJoinedSchema, payload)),
  );
  return [ended, joined];
}
