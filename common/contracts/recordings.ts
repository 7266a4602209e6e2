/**
 * Recordings between the control plane, the media node and the worker role. They share no call:
 * the stream's storage prefix is the contract. StartStream prepares it (a manifest, written only
 * when the stream is recorded), the media node that carries the broadcaster's producer finds the
 * manifest and uploads segments under it as they close (whichever node carries the stream: a
 * failover or a reconnect continues the same prefix), and at the stream's end the durable
 * `recording` job joins them into the replay's source.
 *
 * Segment keys carry their wall-clock start and duration, so the join lays every segment at its
 * real time and a gap (a recorder restart, a failover, a broadcaster reconnecting) becomes silence
 * of its real length, without any index file that a crash could leave stale.
 */
import { z } from 'zod';

/** Where everything of a stream's recording lives; deleting the replay deletes all of it. */
export const recordingPrefix = (streamId: number | string): string => `streams/${streamId}/recording/`;
export const recordingManifestKey = (streamId: number | string): string =>
  `${recordingPrefix(streamId)}manifest.json`;
export const recordingSegmentsPrefix = (streamId: number | string): string =>
  `${recordingPrefix(streamId)}segments/`;
/**
 * A recorder session says it started (`<writer>.open`, with its first segment on the way) and that
 * its last segment is stored (`<writer>.done`): the join waits for every opened writer to be done,
 * or for RECORDING_SETTLE_S after the stream's end (a node that crashed never says done).
 */
export const recordingWritersPrefix = (streamId: number | string): string =>
  `${recordingPrefix(streamId)}writers/`;
export const recordingWriterKey = (
  streamId: number | string,
  writer: string,
  state: 'open' | 'done',
): string =>
  `${recordingWritersPrefix(streamId)}${writer.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 80)}.${state}`;

/** The joined recording, the replay track's source (FLAC: lossless, a third of WAV's size). */
export const replaySourceKey = (streamId: number | string): string =>
  `${recordingPrefix(streamId)}replay.flac`;

export const recordingManifestSchema = z.object({
  streamId: z.number().int().positive(),
  ownerId: z.number().int().positive(),
  /** When StartStream ran (ISO 8601); the recording's own start is its first segment's. */
  preparedAt: z.string().datetime(),
});
export type RecordingManifest = z.infer<typeof recordingManifestSchema>;

/** Digits enough for any epoch millisecond until the year 5138, so keys sort by time. */
const MS_DIGITS = 14;
const SEGMENT_NAME = /^(\d{14})-(\d{1,9})-([A-Za-z0-9_.-]{1,80})\.ogg$/;

export interface SegmentRef {
  /** Wall-clock time of the segment's first sample, epoch milliseconds. */
  startMs: number;
  durationMs: number;
  /** Who wrote it (node and recorder session), so two writers never take one key. */
  writer: string;
}

export function recordingSegmentKey(streamId: number | string, segment: SegmentRef): string {
  const start = String(Math.round(segment.startMs)).padStart(MS_DIGITS, '0');
  const writer = segment.writer.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 80);
  return `${recordingSegmentsPrefix(streamId)}${start}-${Math.max(0, Math.round(segment.durationMs))}-${writer}.ogg`;
}

/** The segment a key names; null for anything else under the prefix. */
export function parseSegmentKey(key: string): (SegmentRef & { key: string }) | null {
  const name = key.slice(key.lastIndexOf('/') + 1);
  const match = SEGMENT_NAME.exec(name);
  if (!match?.[1] || !match[2] || !match[3]) return null;
  return { key, startMs: Number(match[1]), durationMs: Number(match[2]), writer: match[3] };
}

export const RECORDING_QUEUE = 'recording';

/** Queued by the control plane when a recorded stream ends; the worker joins its segments. */
export const recordingJobSchema = z.object({
  streamId: z.number().int().positive(),
  trackId: z.number().int().positive(),
  ownerId: z.number().int().positive(),
  /** When the stream ended (ISO 8601): segments still uploading after that are waited for. */
  endedAt: z.string().datetime(),
});
export type RecordingJob = z.infer<typeof recordingJobSchema>;

/** One job per stream: a retried StopStream or two control planes queue it once. */
export const recordingJobId = (streamId: number): string => `recording-${streamId}`;

/**
 * The worker's report of a join, answered by the control plane (request/reply on
 * `recordings.joined`): with audio the replay track gets its source and the recording's start,
 * and its transcode is queued; without any, the track is deleted and the stream says why.
 */
export const RECORDING_JOINED_SUBJECT = 'recordings.joined';
export const recordingJoinedSchema = z.discriminatedUnion('outcome', [
  z.object({
    outcome: z.literal('joined'),
    streamId: z.number().int().positive(),
    trackId: z.number().int().positive(),
    /** Wall-clock start of the recording (its first segment), ISO 8601: chat offsets count from it. */
    recordingStartedAt: z.string().datetime(),
    durationS: z.number().min(0),
    /** Seconds of silence laid in for gaps (restarts, failovers, reconnects). */
    gapS: z.number().min(0),
    sourceKey: z.string().min(1).max(512),
  }),
  z.object({
    outcome: z.literal('no_audio'),
    streamId: z.number().int().positive(),
    trackId: z.number().int().positive(),
  }),
]);
export type RecordingJoined = z.infer<typeof recordingJoinedSchema>;
