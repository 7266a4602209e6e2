/**
 * The stream lifecycle on the EventBus. The control plane publishes `stream.*` as a stream starts,
 * ends or moves; edges keep their view of live streams from them. Edges tell each other where a
 * stream's broadcaster is with `signaling.broadcaster.<streamId>`. Payloads of `stream.*` are
 * snake_case JSON; every subscriber parses them with these schemas because another process may
 * have sent them.
 */
import { z } from 'zod';

export const STREAM_STARTED = 'stream.started';
export const STREAM_ENDED = 'stream.ended';
/**
 * A live stream moved to another media node because its node was lost (missed heartbeats, or a
 * restart): every edge tells the stream's clients to join again, which lands them on the new node.
 */
export const STREAM_MOVED = 'stream.moved';

export const streamStartedEventSchema = z.object({
  stream_id: z.number().int().positive(),
  owner_id: z.number().int().positive(),
  owner_username: z.string(),
  title: z.string(),
  chat_room_id: z.number().int().positive(),
  media_node_id: z.string().nullable(),
  is_public: z.boolean(),
  allow_anonymous: z.boolean(),
  started_at: z.string(),
});
export type StreamStartedEvent = z.infer<typeof streamStartedEventSchema>;

/** The end reason of a stream whose media node was lost with no other to take it. */
export const MEDIA_NODE_LOST = 'media_node_lost';

export const streamEndedEventSchema = z.object({
  stream_id: z.number().int().positive(),
  owner_id: z.number().int().positive(),
  chat_room_id: z.number().int().positive(),
  media_node_id: z.string().nullable(),
  /** "stopped", "stopped_by_moderator", "replaced", "broadcaster_disconnected", MEDIA_NODE_LOST, ... */
  reason: z.string(),
  ended_at: z.string(),
  peak_listeners: z.number().int().min(0),
});
export type StreamEndedEvent = z.infer<typeof streamEndedEventSchema>;

export const streamMovedEventSchema = z.object({
  stream_id: z.number().int().positive(),
  /** The node hosting the stream now (the same id when the lost node came back as a new process). */
  media_node_id: z.string(),
  previous_media_node_id: z.string(),
  /** MEDIA_NODE_LOST. */
  reason: z.string(),
  moved_at: z.string(),
});
export type StreamMovedEvent = z.infer<typeof streamMovedEventSchema>;

/**
 * A broadcaster joined their stream through an edge: the others cancel their grace timers for it
 * and close their own older connection of that broadcaster.
 */
export const broadcasterSubject = (streamId: number) => `signaling.broadcaster.${streamId}`;
export const ALL_BROADCASTERS = 'signaling.broadcaster.*';
export const broadcasterEventSchema = z.object({
  edgeId: z.string(),
  streamId: z.number().int().positive(),
  peerId: z.string(),
});
export type BroadcasterEvent = z.infer<typeof broadcasterEventSchema>;
