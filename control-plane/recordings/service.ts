/**
 * The replay rpcs of StreamService, merged into its binding. A replay is looked up by its stream.
 *
 * - GetReplay: whoever may see the replay track (the owner and moderators always; anyone once it
 *   is public and ready) and its stream. Others get NOT_FOUND, so private replays do not leak.
 *   A stream that was not recorded, that never had audio, or that is still live gets
 *   FAILED_PRECONDITION saying which.
 * - UpdateReplay (publish, unpublish, retitle) and DeleteReplay: the broadcaster who owns it.
 *   Deleting removes every object of the replay (the recording's prefix and the track's outputs)
 *   before its row, so a failed delete can be retried and finds what is left.
 */
import { z } from 'zod';
import {
  FailedPreconditionError,
  NotFoundError,
  PermissionDeniedError,
  recordingPrefix,
} from '../../common/contracts/index.js';
import type { Sql } from '../../common/db/index.js';
import { hasPermission } from '../../common/index.js';
import type { BlobStorage } from '../../common/ports/index.js';
import type { Replay, StreamServiceService } from '../../proto/gen/veza/stream/stream.js';
import { replayMessages } from '../chat/index.js';
import type { CallContext, ServiceImplementation } from '../grpc/index.js';
import { parseInput } from '../parse-input.js';
import {
  listingTextFields,
  moveRecordingStatus,
  type StreamRecording,
  streamRecordingOf,
} from '../streams/index.js';
import {
  canSee,
  deleteReplayTrack,
  replayTrackOf,
  type TrackRow,
  toTrack,
  updateReplayTrack,
} from '../uploads/index.js';

export type ReplayRpcs = Pick<
  ServiceImplementation<typeof StreamServiceService>,
  'getReplay' | 'updateReplay' | 'deleteReplay'
>;

interface ReplayRpcDeps {
  sql: Sql;
  blobs: BlobStorage;
}

const streamId = z.number().int().positive('stream_id must be a positive id');
const streamIdSchema = z.object({ streamId });
const updateReplaySchema = z
  .object({
    streamId,
    isPublic: z.boolean().optional(),
    title: listingTextFields.title.optional(),
  })
  .refine((value) => value.isPublic !== undefined || value.title !== undefined, {
    message: 'nothing to change: give is_public or title',
    path: ['isPublic'],
  });

const isModerator = (ctx: CallContext): boolean =>
  !!ctx.user && hasPermission(ctx.user.roles, 'stream:moderate');

/** Why a stream has no replay, when it has none for a reason its viewer may know. */
function noReplay(stream: StreamRecording): Error {
  switch (stream.recording_status) {
    case 'off':
      return new FailedPreconditionError(
        `stream ${stream.id} was not recorded: its recording was turned off`,
      );
    case 'recording':
      return new FailedPreconditionError(
        `stream ${stream.id} is still live; its replay is made when it ends`,
      );
    case 'no_audio':
      return new FailedPreconditionError(`stream ${stream.id} never had audio: nothing was recorded`);
    case 'deleted':
      return new NotFoundError(`the replay of stream ${stream.id} was deleted`);
    default:
      return new NotFoundError(`stream ${stream.id} has no replay`);
  }
}

export function createReplayRpcs(deps: ReplayRpcDeps): ReplayRpcs {
  const { sql, blobs } = deps;

  /** The stream and its replay track, if the caller may see them. */
  async function visible(
    id: number,
    ctx: CallContext,
  ): Promise<{ stream: StreamRecording; track: TrackRow }> {
    const stream = await streamRecordingOf(sql, id);
    const owner = ctx.user?.userId === stream?.owner_id;
    if (!stream || (!stream.is_public && !owner && !isModerator(ctx)))
      throw new NotFoundError(`stream ${id} not found`);
    const track = await replayTrackOf(sql, id);
    if (!track) throw noReplay(stream);
    if (!canSee(track, ctx)) throw new NotFoundError(`stream ${id} has no replay`);
    return { stream, track };
  }

  /** The replay its owner may change. */
  async function owned(id: number, ctx: CallContext): Promise<{ stream: StreamRecording; track: TrackRow }> {
    const found = await visible(id, ctx);
    if (ctx.user?.userId !== found.stream.owner_id) {
      throw new PermissionDeniedError(`only the broadcaster of stream ${id} may change its replay`);
    }
    return found;
  }

  async function present(stream: StreamRecording, track: TrackRow): Promise<Replay> {
    const startedAt = track.recording_started_at;
    const messages = startedAt ? await replayMessages(sql, stream.chat_room_id) : [];
    return {
      streamId: stream.id,
      track: toTrack(track, blobs),
      recordingStartedAt: startedAt ?? undefined,
      messages: messages.map((message) => ({
        messageId: message.id,
        userId: message.user_id,
        username: message.username,
        content: message.content,
        offsetMs: startedAt ? message.created_at.getTime() - startedAt.getTime() : 0,
        sentAt: message.created_at,
      })),
    };
  }

  return {
    getReplay: {
      // Anonymous REST callers arrive through the edge with its API key and no token.
      policy: 'jwt-or-api-key',
      handler: async (request, ctx) => {
        const input = parseInput(streamIdSchema, request);
        const { stream, track } = await visible(input.streamId, ctx);
        return { replay: await present(stream, track) };
      },
    },

    updateReplay: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const input = parseInput(updateReplaySchema, request);
        const { stream, track } = await owned(input.streamId, ctx);
        const updated = await updateReplayTrack(sql, track.id, {
          isPublic: input.isPublic,
          title: input.title,
        });
        if (!updated) throw new NotFoundError(`stream ${input.streamId} has no replay`);
        ctx.log.info(
          { streamId: stream.id, trackId: track.id, isPublic: updated.is_public },
          'replay updated',
        );
        return { replay: await present(stream, updated) };
      },
    },

    deleteReplay: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const input = parseInput(streamIdSchema, request);
        const { stream, track } = await owned(input.streamId, ctx);
        const removed =
          (await blobs.deletePrefix(recordingPrefix(stream.id))) +
          (await blobs.deletePrefix(`tracks/${track.id}/`));
        await sql.begin(async (tx) => {
          await deleteReplayTrack(tx, track.id);
          await moveRecordingStatus(tx, stream.id, ['processing', 'ready', 'failed'], 'deleted');
        });
        ctx.log.info({ streamId: stream.id, trackId: track.id, objects: removed }, 'replay deleted');
        return { success: true };
      },
    },
  };
}
