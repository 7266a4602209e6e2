/**
 * The upload and playback rpcs of StreamService. The streams module binds the service;
 * these handlers are merged into its implementation.
 *
 * - UploadAudio (signed-in user with track:upload): creates the track awaiting its bytes.
 *   `file_size` declares the length (0: undeclared, the end of the first chunk stream ends
 *   the file); `metadata` is an optional UTF-8 JSON object
 *   {"checksum": "<sha256 hex of the whole file>", "filename": "...", "is_public": bool}.
 * - UploadAudioChunks (the owner): AudioChunks with stream_id = the track id, chunk_index
 *   consecutive within the call, and on the first chunk `offset` = the bytes already received
 *   (0 for a fresh upload). A call that ends before the declared length leaves a resumable
 *   upload; the call that completes it verifies the checksum and queues processing. The
 *   optional `upload-checksum` call metadata ("sha256 <base64>") covers the call's bytes.
 * - GetTrack: the owner and moderators always; anyone once the track is ready and public.
 *   Others get NOT_FOUND, so private tracks do not leak.
 * - ListTracks: the caller's own tracks. CancelUpload: the owner, while bytes are missing.
 * - StreamAudio: whoever may see the track, once it is ready.
 */

import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
} from '../../common/contracts/index.js';
import { hasPermission } from '../../common/index.js';
import type { BlobStorage } from '../../common/ports/index.js';
import type { AudioChunk, StreamServiceService } from '../../proto/gen/veza/stream/stream.js';
import type { CallContext, ServiceImplementation } from '../grpc/index.js';
import { pickRendition, streamRendition } from './playback.js';
import { toTrack } from './present.js';
import type { TrackRow } from './store.js';
import type { Uploads } from './uploads.js';
import {
  formatOf,
  listTracksSchema,
  parseInput,
  parseRequestChecksum,
  parseUploadMetadata,
  trackIdSchema,
  uploadAudioSchema,
} from './validation.js';

/** The call metadata carrying a per-call checksum (tus's Upload-Checksum). */
export const UPLOAD_CHECKSUM_METADATA = 'upload-checksum';

export type UploadRpcs = Pick<
  ServiceImplementation<typeof StreamServiceService>,
  'uploadAudio' | 'uploadAudioChunks' | 'streamAudio' | 'getTrack' | 'listTracks' | 'cancelUpload'
>;

export interface UploadRpcDeps {
  uploads: Uploads;
  blobs: BlobStorage;
}

function uploader(ctx: CallContext): number {
  const user = ctx.user;
  if (!user) throw new PermissionDeniedError('uploading needs a signed-in user');
  if (!hasPermission(user.roles, 'track:upload'))
    throw new PermissionDeniedError('uploading needs the track:upload permission');
  return user.userId;
}

const isModerator = (ctx: CallContext): boolean =>
  !!ctx.user && hasPermission(ctx.user.roles, 'stream:moderate');

export function canSee(row: TrackRow, ctx: CallContext): boolean {
  if (ctx.user?.userId === row.owner_id || isModerator(ctx)) return true;
  return row.is_public && row.status === 'ready' && !row.uploading;
}

/** The chunks' bytes, checking that they name one track and count up without a gap. */
async function* chunkBytes(first: AudioChunk, rest: AsyncIterator<AudioChunk>): AsyncGenerator<Buffer> {
  let expected = first.chunkIndex + 1;
  yield first.audioData;
  for (;;) {
    const next = await rest.next();
    if (next.done) return;
    const chunk = next.value;
    if (chunk.streamId !== first.streamId) {
      throw new InvalidArgumentError(
        `every chunk of a call must name track ${first.streamId} (got stream_id ${chunk.streamId})`,
        'stream_id',
      );
    }
    if (chunk.chunkIndex !== expected) {
      throw new InvalidArgumentError(
        `chunk_index ${chunk.chunkIndex} is out of order: expected ${expected}`,
        'chunk_index',
      );
    }
    expected += 1;
    yield chunk.audioData;
  }
}

export function createUploadRpcs(deps: UploadRpcDeps): UploadRpcs {
  const { uploads, blobs } = deps;

  const visibleTrack = async (trackId: number, ctx: CallContext): Promise<TrackRow> => {
    const row = await uploads.get(trackId);
    if (!row || !canSee(row, ctx)) throw new NotFoundError(`track ${trackId} not found`);
    return row;
  };

  const response = (row: TrackRow) => {
    const track = toTrack(row, blobs);
    const audio = track.renditions.find((rendition) => rendition.format === 'opus') ?? track.renditions[0];
    return {
      success: true,
      trackId: row.id,
      audioUrl: audio?.url ?? '',
      waveformUrl: track.waveformUrl,
      errorMessage: '',
      track,
    };
  };

  return {
    uploadAudio: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const ownerId = uploader(ctx);
        const input = parseInput(uploadAudioSchema, request);
        if (input.userId !== 0 && input.userId !== ownerId) {
          throw new PermissionDeniedError('user_id must be 0 or your own id: uploads belong to the caller');
        }
        const metadata = parseUploadMetadata(input.metadata);
        const row = await uploads.create({
          ownerId,
          title: input.title,
          description: input.description,
          genre: input.genre,
          isPublic: metadata.isPublic,
          fileFormat: formatOf(input.fileFormat, metadata.filename),
          filename: metadata.filename,
          uploadLength: input.fileSize === 0 ? null : input.fileSize,
          checksum: metadata.checksum,
          declaredDurationS: input.duration === 0 ? null : input.duration,
          protocol: metadata.protocol,
        });
        return response(row);
      },
    },

    uploadAudioChunks: {
      policy: 'jwt',
      handler: async (requests, ctx) => {
        const ownerId = uploader(ctx);
        const header = ctx.metadata.get(UPLOAD_CHECKSUM_METADATA)[0];
        const checksum = header === undefined ? undefined : parseRequestChecksum(String(header));
        const iterator = requests[Symbol.asyncIterator]();
        const first = await iterator.next();
        if (first.done) {
          throw new InvalidArgumentError(
            'no chunks: the first AudioChunk must name the track in stream_id',
            'stream_id',
          );
        }
        const { trackId } = parseInput(trackIdSchema, { trackId: first.value.streamId });
        if (!Number.isSafeInteger(first.value.offset) || first.value.offset < 0) {
          throw new InvalidArgumentError('offset must not be negative', 'offset');
        }
        const row = await uploads.append({
          ownerId,
          trackId,
          offset: first.value.offset,
          chunks: chunkBytes(first.value, iterator),
          signal: ctx.signal,
          ...(checksum ? { checksum } : {}),
        });
        return response(row);
      },
    },

    getTrack: {
      // Anonymous REST callers arrive through the edge with its API key and no token.
      policy: 'jwt-or-api-key',
      handler: async (request, ctx) => {
        const { trackId } = parseInput(trackIdSchema, request);
        return { track: toTrack(await visibleTrack(trackId, ctx), blobs) };
      },
    },

    listTracks: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        if (!ctx.user) throw new PermissionDeniedError('listing your tracks needs a signed-in user');
        const input = parseInput(listTracksSchema, request);
        const rows = await uploads.list(ctx.user.userId, input.limit, input.beforeId);
        return { tracks: rows.map((row) => toTrack(row, blobs)) };
      },
    },

    cancelUpload: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        if (!ctx.user) throw new PermissionDeniedError('cancelling an upload needs a signed-in user');
        const { trackId } = parseInput(trackIdSchema, request);
        await uploads.cancel(ctx.user.userId, trackId);
        return { success: true };
      },
    },

    streamAudio: {
      policy: 'jwt-or-api-key',
      handler: async (request, stream, ctx) => {
        const { trackId } = parseInput(trackIdSchema, { trackId: request.trackId });
        const row = await visibleTrack(trackId, ctx);
        if (row.uploading || row.status !== 'ready') {
          throw new FailedPreconditionError(
            `track ${trackId} is not ready to play (status ${row.uploading ? 'uploading' : row.status})`,
          );
        }
        const rendition = pickRendition(row, request.format, request.quality);
        await streamRendition(row, rendition, blobs, stream, ctx.signal);
      },
    },
  };
}
