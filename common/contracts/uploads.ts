/**
 * Uploads between the control plane and the worker role: the durable `transcode` job the control
 * plane queues for each uploaded source, the uploads module's track records the worker reads and
 * writes through (request/reply on `uploads.tracks.<method>`: only the uploads module touches the
 * tracks table), and the progress the worker reports on the bus (`tracks.<id>.progress`), which
 * edges forward to the uploader's sockets and the control plane turns into stored
 * "upload.ready" / "upload.failed" notifications.
 */
import { z } from 'zod';
import { traceContextSchema } from './trace-context.js';

export const TRANSCODE_QUEUE = 'transcode';

export const transcodeJobSchema = z.object({
  trackId: z.number().int().positive(),
  sourceKey: z.string().min(1).max(512),
  /** The trace of the upload that queued the job, which the transcode continues (tracing on only). */
  trace: traceContextSchema.optional(),
});
type TranscodeJob = z.infer<typeof transcodeJobSchema>;

/**
 * The job id of a track's transcode: it names the track and the source, so enqueueing twice (a
 * retried upload request) makes one job.
 */
function transcodeJobId(job: TranscodeJob): string {
  const sourceTag = job.sourceKey.replace(/[^A-Za-z0-9._-]/g, '_').slice(-120);
  return `track-${job.trackId}.${sourceTag}`;
}

/** What enqueueTranscode needs of a JobQueue (common/ports' JobQueue has it). */
interface TranscodeJobSink<R> {
  enqueue(queue: typeof TRANSCODE_QUEUE, payload: TranscodeJob, options: { jobId: string }): Promise<R>;
}

/** Queues the transcode of a track's source; the same track and source queued twice make one job. */
export function enqueueTranscode<R>(jobs: TranscodeJobSink<R>, job: TranscodeJob): Promise<R> {
  const parsed = transcodeJobSchema.parse(job);
  return jobs.enqueue(TRANSCODE_QUEUE, parsed, { jobId: transcodeJobId(parsed) });
}

/** The pipeline's stages, in order. */
const TRANSCODE_STAGES = ['probe', 'loudness', 'renditions', 'waveform', 'cover', 'publish'] as const;

export const trackProgressSubject = (trackId: number): string => `tracks.${trackId}.progress`;
/** Every track's progress events. */
export const ALL_TRACK_PROGRESS = 'tracks.*.progress';

const TRACK_STATUSES = ['processing', 'ready', 'failed'] as const;

export const trackProgressEventSchema = z.object({
  trackId: z.number().int().positive(),
  ownerId: z.number().int().positive(),
  status: z.enum(TRACK_STATUSES),
  progress: z.number().min(0).max(100),
  stage: z.enum(TRANSCODE_STAGES).optional(),
  failureReason: z.string().optional(),
});
export type TrackProgressEvent = z.infer<typeof trackProgressEventSchema>;

// The track records: what the worker asks of the uploads module.

const trackIdSchema = z.number().int().positive();
/** A JSON reply carries `null` where the method returns nothing. */
const nothing = z.union([z.null(), z.undefined()]).transform((): void => undefined);

/** What becomes of a transcode job, as the track's record says. */
const trackToProcessSchema = z.discriminatedUnion('state', [
  /** The track was deleted: nothing to do. */
  z.object({ state: z.literal('missing') }),
  /** The track has another source now: this job is stale. */
  z.object({ state: z.literal('other-source') }),
  /** Already transcoded from this very source (a redelivered job): nothing to do. */
  z.object({ state: z.literal('ready') }),
  z.object({
    state: z.literal('to-process'),
    ownerId: z.number().int().positive(),
    /** sha256 of the upload as stored, which the downloaded source must match; null when unknown. */
    sourceChecksum: z.string().nullable(),
  }),
]);
export type TrackToProcess = z.infer<typeof trackToProcessSchema>;

const trackRenditionSchema = z.object({
  format: z.string().min(1).max(16),
  codec: z.string().min(1).max(16),
  bitrate: z.number().min(0),
  key: z.string().min(1).max(512),
  url: z.string().min(1).max(2048),
});

/** The outcome of a transcode, recorded in one statement. */
const trackReadySchema = z.object({
  trackId: trackIdSchema,
  metadata: z.object({
    formatName: z.string(),
    durationS: z.number().min(0),
    codec: z.string(),
    bitrate: z.number().min(0).nullable(),
    sampleRate: z.number().min(0),
    channels: z.number().min(0),
  }),
  /** Integrated loudness of the source (LUFS); null when it was not measured. */
  inputLufs: z.number().nullable(),
  renditions: z.array(trackRenditionSchema).max(16),
  waveformKey: z.string().min(1).max(512),
  coverKey: z.string().min(1).max(512).nullable(),
  /** The folder of the outputs, derived from the source's bytes. */
  version: z.string().min(1).max(64),
  source: z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/), size: z.number().int().min(0) }),
});
export type TrackReady = z.infer<typeof trackReadySchema>;

/**
 * The uploads module's calls for the worker role: request/reply on `uploads.tracks.<method>`,
 * `{ request }` parsed by the control plane that answers (any one of them: each runs one
 * responder and the bus hands every request to one), `reply` parsed by the worker. A request
 * nobody answers throws UnavailableError; the worker lets it fail the delivery, so the job
 * queue redelivers the job later rather than dropping it.
 */
export const UPLOADS_TRACK_CALLS = {
  /** The track of a job: whether it still wants this source transcoded, and what for. */
  trackToProcess: {
    request: z.object({ trackId: trackIdSchema, sourceKey: transcodeJobSchema.shape.sourceKey }),
    reply: trackToProcessSchema,
  },
  /** Status "processing" from 0 %, unless the track is already ready. */
  markProcessing: { request: z.object({ trackId: trackIdSchema }), reply: nothing },
  /** The percentage GetTrack shows, while the track is processing. */
  recordProgress: {
    request: z.object({ trackId: trackIdSchema, percent: z.number().min(0).max(100) }),
    reply: nothing,
  },
  /**
   * Ready with its renditions and metadata, if it is still processing: "changed" when it is not
   * (another delivery finished it, or it failed meanwhile), "missing" when it was deleted.
   */
  recordReady: {
    request: trackReadySchema,
    reply: z.object({ outcome: z.enum(['recorded', 'changed', 'missing']) }),
  },
  /**
   * Failed with the reason, unless it is ready; with `dropSource` the track stops pointing at its
   * source (a rejected upload: the worker deletes the source afterwards).
   */
  recordFailed: {
    request: z.object({
      trackId: trackIdSchema,
      reason: z.string().min(1),
      dropSource: z.boolean(),
    }),
    reply: nothing,
  },
} as const;

export type UploadsTrackMethod = keyof typeof UPLOADS_TRACK_CALLS;
export type UploadsTrackRequest<M extends UploadsTrackMethod> = z.input<
  (typeof UPLOADS_TRACK_CALLS)[M]['request']
>;
export type UploadsTrackReply<M extends UploadsTrackMethod> = z.output<
  (typeof UPLOADS_TRACK_CALLS)[M]['reply']
>;

export const uploadsTrackSubject = (method: UploadsTrackMethod): string => `uploads.tracks.${method}`;
/** Every method: what a control plane answers. */
export const UPLOADS_TRACK_REQUESTS = 'uploads.tracks.*';
