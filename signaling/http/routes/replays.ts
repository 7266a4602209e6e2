/**
 * Replays of recorded streams over REST, thin translations to StreamService's replay rpcs:
 * GET /stream/:id/replay (the replay track and its chat with offsets from the recording's start),
 * PATCH /stream/:id/replay (the broadcaster publishes, unpublishes or retitles it) and
 * DELETE /stream/:id/replay (the broadcaster deletes it and every object it stored).
 *
 * Visibility and ownership are the control plane's: anyone else than the owner (and moderators)
 * sees a replay only once it is public and ready, and gets 404 otherwise.
 */
import { z } from 'zod';
import { InvalidArgumentError } from '../../../common/contracts/index.js';
import type { Replay } from '../../../proto/gen/veza/stream/stream.js';
import type { EdgeRequest } from '../context.js';
import { json } from '../reply.js';
import type { RouteRegistrar } from '../server.js';
import { callContext, type RouteDeps, requireBearer } from './shared.js';
import { presentTrack, type TrackJson } from './tracks.js';

export interface ReplayJson {
  stream_id: number;
  track: TrackJson;
  /** Wall-clock start of the recording; null until the recording is joined. */
  recording_started_at: string | null;
  /** Oldest first; `offset_ms` counts from the recording's start. */
  messages: {
    id: number;
    user_id: number;
    username: string;
    content: string;
    offset_ms: number;
    sent_at: string | null;
  }[];
}

export function presentReplay(replay: Replay | undefined): ReplayJson {
  if (!replay) throw new Error('control plane replied without replay');
  return {
    stream_id: replay.streamId,
    track: presentTrack(replay.track),
    recording_started_at: replay.recordingStartedAt ? replay.recordingStartedAt.toISOString() : null,
    messages: replay.messages.map((message) => ({
      id: message.messageId,
      user_id: message.userId,
      username: message.username,
      content: message.content,
      offset_ms: message.offsetMs,
      sent_at: message.sentAt ? message.sentAt.toISOString() : null,
    })),
  };
}

const NO_STORE = { 'cache-control': 'no-store' };

const updateSchema = z.strictObject({
  is_public: z.boolean().optional(),
  title: z.string().optional(),
});

function streamIdParam(request: EdgeRequest): number {
  const raw = request.params.id ?? '';
  const id = Number(raw);
  if (!/^[1-9]\d*$/.test(raw) || !Number.isSafeInteger(id)) {
    throw new InvalidArgumentError(`invalid path parameter "id": "${raw}" is not a stream id`, 'id');
  }
  return id;
}

export function registerReplayRoutes(
  routes: RouteRegistrar,
  deps: Pick<RouteDeps, 'controlPlane' | 'config'>,
): void {
  const stream = deps.controlPlane.stream;
  const jsonBody = { json: deps.config.BODY_LIMIT_BYTES };

  routes.route('GET', '/stream/:id/replay', async (request) => {
    const token = request.header('authorization') ? requireBearer(request) : undefined;
    const streamId = streamIdParam(request);
    const response = await stream.getReplay({ streamId }, callContext(request, token));
    return json({ replay: presentReplay(response.replay) }, 200, NO_STORE);
  });

  routes.route(
    'PATCH',
    '/stream/:id/replay',
    async (request) => {
      const token = requireBearer(request);
      const streamId = streamIdParam(request);
      const input = request.json(updateSchema);
      const response = await stream.updateReplay(
        { streamId, isPublic: input.is_public, title: input.title },
        callContext(request, token),
      );
      return json({ replay: presentReplay(response.replay) }, 200, NO_STORE);
    },
    { body: jsonBody },
  );

  routes.route('DELETE', '/stream/:id/replay', async (request) => {
    const token = requireBearer(request);
    const streamId = streamIdParam(request);
    await stream.deleteReplay({ streamId }, callContext(request, token));
    return json({ deleted: true }, 200, NO_STORE);
  });
}
