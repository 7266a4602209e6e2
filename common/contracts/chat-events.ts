/**
 * What the chat publishes on the EventBus, for the edges (WebSocket delivery on every node)
 * and for StreamMessages / StreamRoomActivity / ChatStream in any control-plane process.
 *
 * - `chat.room.<roomId>`: a `Message` {event_type: "created" | "edited" | "deleted", chat_message},
 *   or a batch {batch: [Message, ...]} of the "created" events one group commit stored, in id
 *   order (control-plane/chat/batcher.ts). Published after the change is committed. Flagged
 *   messages are never published. Read both forms with `parseRoomEvents`.
 * - `chat.activity.<roomId>`: a `RoomActivity` (join, leave, typing, stopped_typing, muted,
 *   unmuted, banned). Ephemeral: never stored, lost when nobody listens.
 * - `chat.state.<roomId>`: between control planes only: a membership or a sanction changed
 *   (committed), so every control plane's memory of who may send stays current
 *   (control-plane/chat/room-states.ts). Unlike `chat.activity`, a presence `leave` (a socket
 *   closed) is not a membership change and is never sent here.
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
export const roomStateSubject = (roomId: number): string => `chat.state.${roomId}`;
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

/** The most events one batch carries (a group commit stores at most this many messages). */
export const MESSAGE_BATCH_MAX = 1000;

export const messageBatchSchema = z.object({
  batch: z.array(messageEventSchema).min(1).max(MESSAGE_BATCH_MAX),
});
export type MessageBatch = z.infer<typeof messageBatchSchema>;

const roomPayloadSchema = z.union([messageBatchSchema, messageEventSchema]);

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

/** One group commit's stored messages, in id order, as one bus payload. */
export function toMessageBatch(messages: readonly ChatMessage[]): MessageBatch {
  return { batch: messages.map((message) => toMessageEvent('created', message)) };
}

function fromMessageEvent(event: MessageEvent): Message {
  const m = event.chat_message;
  return toMessage(event.event_type, {
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
  });
}

/** A StreamMessages item: the message's fields (ChatMessage's names and numbers) and what happened to it. */
export function toMessage(eventType: string, message: ChatMessage): Message {
  return {
    messageId: message.messageId,
    roomId: message.roomId,
    userId: message.userId,
    content: message.content,
    messageType: message.messageType,
    metadata: message.metadata,
    replyToId: message.replyToId,
    createdAt: message.createdAt,
    updatedAt: message.updatedAt,
    eventType,
    clientMessageId: message.clientMessageId,
    username: message.username,
    deleted: message.deleted,
  };
}

/** The ChatMessage a StreamMessages item carries. */
export function chatMessageOf(message: Message): ChatMessage {
  return {
    messageId: message.messageId,
    roomId: message.roomId,
    userId: message.userId,
    content: message.content,
    messageType: message.messageType,
    metadata: message.metadata,
    replyToId: message.replyToId,
    createdAt: message.createdAt,
    updatedAt: message.updatedAt,
    clientMessageId: message.clientMessageId,
    username: message.username,
    deleted: message.deleted,
  };
}

/** The Message of a single-event bus payload, or null when another process sent something malformed. */
export function parseMessageEvent(payload: unknown): Message | null {
  const parsed = messageEventSchema.safeParse(payload);
  return parsed.success ? fromMessageEvent(parsed.data) : null;
}

/**
 * The events of a `chat.room.<id>` payload, in the order they were published: one event, or a
 * batch. Null when malformed (the whole payload: a batch is one commit, never delivered in part).
 */
export function parseRoomEvents(payload: unknown): Message[] | null {
  const parsed = roomPayloadSchema.safeParse(payload);
  if (!parsed.success) return null;
  return 'batch' in parsed.data ? parsed.data.batch.map(fromMessageEvent) : [fromMessageEvent(parsed.data)];
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

/**
 * `chat.state.<roomId>`: who may send changed in a room. Sanctions carry their end (ISO 8601;
 * null for a ban until lifted); a ban also ends the membership.
 */
const stateTarget = { room_id: z.number().int().positive(), user_id: z.number().int().positive() };
export const roomStateEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('member_joined'), ...stateTarget }),
  z.object({ type: z.literal('member_left'), ...stateTarget }),
  z.object({ type: z.literal('banned'), ...stateTarget, until: z.iso.datetime().nullable() }),
  z.object({ type: z.literal('unbanned'), ...stateTarget }),
  z.object({ type: z.literal('muted'), ...stateTarget, until: z.iso.datetime() }),
  z.object({ type: z.literal('unmuted'), ...stateTarget }),
]);
export type RoomStateEvent = z.infer<typeof roomStateEventSchema>;

export function parseRoomStateEvent(payload: unknown): RoomStateEvent | null {
  const parsed = roomStateEventSchema.safeParse(payload);
  return parsed.success ? parsed.data : null;
}
