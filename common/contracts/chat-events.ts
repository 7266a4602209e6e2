/**
 * What the chat publishes on the EventBus, for the edges (WebSocket delivery on every node)
 * and for StreamMessages / StreamRoomActivity / ChatStream in any control-plane process.
 *
 * - `chat.room.<roomId>`: a `Message` {event_type: "created" | "edited" | "deleted", chat_message}.
 *   Published after the change is committed. Flagged messages are never published.
 * - `chat.activity.<roomId>`: a `RoomActivity` (join, leave, typing, stopped_typing, muted,
 *   unmuted, banned). Ephemeral: never stored, lost when nobody listens.
 *
 * Payloads are the proto messages as proto3 JSON with the proto's snake_case field names, so
 * `Message.fromJSON` / `RoomActivity.fromJSON` read them too: bytes (metadata, data) are base64,
 * timestamps ISO 8601 strings.
 */
import { z } from 'zod';
import type { ChatMessage, Message, RoomActivity } from '../../proto/gen/veza/chat/chat.js';
import {
  ACTIVITY_TYPES,
  type ActivityType,
  MESSAGE_EVENT_TYPES,
  type MessageEventType,
} from './chat-rules.js';

export const roomSubject = (roomId: number): string => `chat.room.${roomId}`;
export const activitySubject = (roomId: number): string => `chat.activity.${roomId}`;
/** Every room's messages / activity, for an edge that serves many rooms. */
export const ALL_ROOMS = 'chat.room.*';
export const ALL_ACTIVITY = 'chat.activity.*';

const id = z.number().int().min(0);

export const chatMessageEventSchema = z.object({
  message_id: z.number().int().positive(),
  room_id: z.number().int().positive(),
  user_id: id,
  username: z.string(),
  content: z.string(),
  message_type: z.string(),
  metadata: z.string(),
  reply_to_id: id,
  client_message_id: z.string(),
  deleted: z.boolean(),
  created_at: z.string(),
  updated_at: z.string(),
});

export const messageEventSchema = z.object({
  event_type: z.enum(MESSAGE_EVENT_TYPES),
  chat_message: chatMessageEventSchema,
});
export type MessageEvent = z.infer<typeof messageEventSchema>;

export const activityEventSchema = z.object({
  room_id: z.number().int().positive(),
  activity_type: z.enum(ACTIVITY_TYPES),
  user_id: id,
  username: z.string(),
  data: z.string(),
  timestamp: z.string(),
});
export type ActivityEvent = z.infer<typeof activityEventSchema>;

const iso = (date: Date | undefined): string => (date ?? new Date()).toISOString();

export function toMessageEvent(eventType: MessageEventType, message: ChatMessage): MessageEvent {
  return {
    event_type: eventType,
    chat_message: {
      message_id: message.messageId,
      room_id: message.roomId,
      user_id: message.userId,
      username: message.username,
      content: message.content,
      message_type: message.messageType,
      metadata: message.metadata.toString('base64'),
      reply_to_id: message.replyToId,
      client_message_id: message.clientMessageId,
      deleted: message.deleted,
      created_at: iso(message.createdAt),
      updated_at: iso(message.updatedAt),
    },
  };
}

/** The Message of a bus payload, or null when another process sent something malformed. */
export function parseMessageEvent(payload: unknown): Message | null {
  const parsed = messageEventSchema.safeParse(payload);
  if (!parsed.success) return null;
  const m = parsed.data.chat_message;
  return {
    eventType: parsed.data.event_type,
    chatMessage: {
      messageId: m.message_id,
      roomId: m.room_id,
      userId: m.user_id,
      username: m.username,
      content: m.content,
      messageType: m.message_type,
      metadata: Buffer.from(m.metadata, 'base64'),
      replyToId: m.reply_to_id,
      clientMessageId: m.client_message_id,
      deleted: m.deleted,
      createdAt: new Date(m.created_at),
      updatedAt: new Date(m.updated_at),
    },
  };
}

export function toActivityEvent(activity: RoomActivity): ActivityEvent {
  return {
    room_id: activity.roomId,
    activity_type: activity.activityType as ActivityType,
    user_id: activity.userId,
    username: activity.username,
    data: activity.data.toString('base64'),
    timestamp: iso(activity.timestamp),
  };
}

export function parseActivityEvent(payload: unknown): RoomActivity | null {
  const parsed = activityEventSchema.safeParse(payload);
  if (!parsed.success) return null;
  const a = parsed.data;
  return {
    roomId: a.room_id,
    activityType: a.activity_type,
    userId: a.user_id,
    username: a.username,
    data: Buffer.from(a.data, 'base64'),
    timestamp: new Date(a.timestamp),
  };
}
