/**
 * Uploads between the control plane and the worker role: the durable `transcode` job the control
 * plane queues for each uploaded source, and the progress the worker reports on the bus
 * (`tracks.<id>.progress`), which edges forward to the uploader's sockets and the control plane
 * turns into stored "upload.ready" / "upload.failed" notifications.
 */
import { z } from 'zod';

export const TRANSCODE_QUEUE = 'transcode';

export const transcodeJobSchema = z.object({
  trackId: z.number().int().positive(),
  sourceKey: z.string().min(1).max(512),
});
export type TranscodeJob = z.infer<typeof transcodeJobSchema>;

/**
 * The job id of a track's transcode: it names the track and the source, so enqueueing twice (a
 * retried upload request) makes one job.
 */
export function transcodeJobId(job: TranscodeJob): string {
  const sourceTag = job.sourceKey.replace(/[^A-Za-z0-9._-]/g, '_').slice(-120);
  return `track-${job.trackId}.${sourceTag}`;
}

/** What enqueueTranscode needs of a JobQueue (common/ports' JobQueue has it). */
export interface TranscodeJobSink<R> {
  enqueue(queue: typeof TRANSCODE_QUEUE, payload: TranscodeJob, options: { jobId: string }): Promise<R>;
}

/** Queues the transcode of a track's source; the same track and source queued twice make one job. */
export function enqueueTranscode<R>(jobs: TranscodeJobSink<R>, job: TranscodeJob): Promise<R> {
  const parsed = transcodeJobSchema.parse(job);
  return jobs.enqueue(TRANSCODE_QUEUE, parsed, { jobId: transcodeJobId(parsed) });
}

/** The pipeline's stages, in order. */
export const TRANSCODE_STAGES = ['probe', 'loudness', 'renditions', 'waveform', 'cover', 'publish'] as const;
export type TranscodeStage = (typeof TRANSCODE_STAGES)[number];

export const trackProgressSubject = (trackId: number): string => `tracks.${trackId}.progress`;
/** Every track's progress events. */
export const ALL_TRACK_PROGRESS = 'tracks.*.progress';

export const TRACK_STATUSES = ['processing', 'ready', 'failed'] as const;

export const trackProgressEventSchema = z.object({
  trackId: z.number().int().positive(),
  ownerId: z.number().int().positive(),
  status: z.enum(TRACK_STATUSES),
  progress: z.number().min(0).max(100),
  stage: z.enum(TRANSCODE_STAGES).optional(),
  failureReason: z.string().optional(),
});
export type TrackProgressEvent = z.infer<typeof trackProgressEventSchema>;
