/**
 * The stream lifecycle events the control plane publishes on the EventBus. The payloads
 * are snake_case JSON; subscribers (edges, media nodes) parse them with these schemas
 * because another process may have sent them.
 */
import { z } from 'zod';

export const STREAM_STARTED = 'stream.started';
export const STREAM_ENDED = 'stream.ended';
/**
 * A live stream moved to another media node because its node was lost (missed heartbeats, or a
 * restart): every edge tells the stream's clients to join again, which lands them on the new node.
 */
export const STREAM_MOVED = 'stream.moved';
/** A new listener count for a live stream, so every edge can notify its own clients. */
export const STREAM_LISTENERS = 'stream.listeners';

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

export const streamEndedEventSchema = z.object({
  stream_id: z.number().int().positive(),
  owner_id: z.number().int().positive(),
  chat_room_id: z.number().int().positive(),
  media_node_id: z.string().nullable(),
  /** "stopped", "stopped_by_moderator", "replaced", "broadcaster_disconnected", ... */
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
  /** "media_node_lost". */
  reason: z.string(),
  moved_at: z.string(),
});
export type StreamMovedEvent = z.infer<typeof streamMovedEventSchema>;

export const streamListenersEventSchema = z.object({
  stream_id: z.number().int().positive(),
  listener_count: z.number().int().min(0),
  peak_listeners: z.number().int().min(0),
});
export type StreamListenersEvent = z.infer<typeof streamListenersEventSchema>;
