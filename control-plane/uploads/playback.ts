/**
 * StreamAudio: a ready track's rendition as a server stream of AudioChunks. audio_data
 * carries the rendition file's bytes in order (Ogg Opus or MP4 AAC), so a client that
 * concatenates them has the playable file; chunk_index counts from 0.
 */
import { once } from 'node:events';
import type { ServerWritableStream } from '@grpc/grpc-js';
import { FailedPreconditionError, InvalidArgumentError } from '../../common/contracts/index.js';
import type { BlobStorage } from '../../common/ports/index.js';
import type { AudioChunk, StreamAudioRequest } from '../../proto/gen/veza/stream/stream.js';
import type { StoredRendition, TrackRow } from './store.js';

/** The worker resamples every rendition to 48 kHz (Opus knows no other rate). */
export const RENDITION_SAMPLE_RATE = 48_000;
export const STREAM_CHUNK_BYTES = 64 * 1024;
export const STREAMABLE_FORMATS = ['opus', 'aac'] as const;
const QUALITY_MAX_KBPS = 1000;

/** The rendition of `format` closest to `quality` kbps (the best one for 0). */
export function pickRendition(row: TrackRow, format: string, quality: number): StoredRendition {
  const wanted = format === '' ? 'opus' : format.toLowerCase();
  if (!(STREAMABLE_FORMATS as readonly string[]).includes(wanted)) {
    throw new InvalidArgumentError(
      `format must be ${STREAMABLE_FORMATS.join(' or ')} (HLS is served over HTTP at the track's hls_url)`,
      'format',
    );
  }
  if (!Number.isInteger(quality) || quality < 0 || quality > QUALITY_MAX_KBPS) {
    throw new InvalidArgumentError(
      `quality is a bitrate in kbps from 0 (the best) to ${QUALITY_MAX_KBPS}`,
      'quality',
    );
  }
  const candidates = row.renditions.filter((rendition) => rendition.format === wanted);
  if (candidates.length === 0)
    throw new FailedPreconditionError(`track ${row.id} has no ${wanted} rendition`);
  const score = (rendition: StoredRendition) =>
    quality === 0 ? -rendition.bitrate : Math.abs(rendition.bitrate - quality * 1000);
  return candidates.reduce((best, rendition) => (score(rendition) < score(best) ? rendition : best));
}

export async function streamRendition(
  row: TrackRow,
  rendition: StoredRendition,
  blobs: BlobStorage,
  stream: ServerWritableStream<StreamAudioRequest, AudioChunk>,
  signal: AbortSignal,
): Promise<void> {
  const source = await blobs.get(rendition.key);
  const channels = Math.min(row.channels ?? 2, 2);
  let chunkIndex = 0;
  const send = async (data: Buffer) => {
    const chunk: AudioChunk = {
      streamId: row.id,
      chunkIndex,
      audioData: data,
      sampleRate: RENDITION_SAMPLE_RATE,
      channels,
      codec: rendition.codec,
      timestamp: new Date(),
      offset: 0,
    };
    chunkIndex += 1;
    if (!stream.write(chunk)) await once(stream, 'drain', { signal });
  };
  try {
    for await (const piece of source as AsyncIterable<Buffer>) {
      if (signal.aborted) return;
      for (let offset = 0; offset < piece.length; offset += STREAM_CHUNK_BYTES) {
        await send(piece.subarray(offset, offset + STREAM_CHUNK_BYTES));
      }
    }
  } finally {
    source.destroy();
  }
}
