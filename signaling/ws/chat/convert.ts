/**
 * Control-plane (proto) shapes to the WebSocket protocol's, and control-plane errors to
 * errors naming the request field as the protocol does (`params.replyToId`).
 */

import { toVezaError, VezaError } from '../../../common/contracts/index.js';
import type {
  ChatMessage as ProtoChatMessage,
  ModerationItem as ProtoModerationItem,
  RoomActivity as ProtoRoomActivity,
  Room,
} from '../../../proto/gen/veza/chat/chat.js';
import type { Notification } from '../../../proto/gen/veza/notification/notification.js';
import {
  ACTIVITY_TYPES,
  type ActivityType,
  type ChatMessage,
  type ChatRoom,
  type ModerationItem,
  type RoomActivity,
  type UserNotification,
} from '../../protocol/index.js';

/** The proto's `bytes` JSON fields as an object; anything else (empty, binary, an array) is null. */
export function jsonObject(bytes: Uint8Array | undefined): Record<string, unknown> | null {
  if (!bytes || bytes.length === 0) return null;
  try {
    const value: unknown = JSON.parse(Buffer.from(bytes).toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}

const iso = (date: Date | undefined): string | null => (date ? date.toISOString() : null);
const orNull = (value: number): number | null => (value > 0 ? value : null);

export function toWireMessage(message: ProtoChatMessage): ChatMessage {
  const createdAt = iso(message.createdAt) ?? new Date(0).toISOString();
  return {
    messageId: message.messageId,
    roomId: message.roomId,
    userId: message.userId,
    username: message.username,
    content: message.content,
    messageType: message.messageType || 'text',
    metadata: jsonObject(message.metadata),
    replyToId: orNull(message.replyToId),
    clientMessageId: message.clientMessageId || null,
    deleted: message.deleted,
    createdAt,
    updatedAt: iso(message.updatedAt) ?? createdAt,
  };
}

export function toWireRoom(room: Room): ChatRoom {
  return {
    roomId: room.roomId,
    name: room.name,
    description: room.description,
    ownerId: room.ownerId,
    streamId: orNull(room.streamId),
    isPrivate: room.isPrivate,
    createdAt: iso(room.createdAt),
  };
}

export function toWireActivity(activity: ProtoRoomActivity): RoomActivity | null {
  if (!(ACTIVITY_TYPES as readonly string[]).includes(activity.activityType)) return null;
  return {
    roomId: activity.roomId,
    activityType: activity.activityType as ActivityType,
    userId: activity.userId,
    username: activity.username,
    data: jsonObject(activity.data),
    timestamp: iso(activity.timestamp) ?? new Date().toISOString(),
  };
}

export function toWireNotification(notification: Notification): UserNotification {
  return {
    notificationId: notification.notificationId,
    type: notification.notificationType,
    title: notification.title,
    body: notification.body,
    data: jsonObject(notification.data),
    read: notification.read,
    createdAt: iso(notification.createdAt) ?? new Date().toISOString(),
  };
}

export function toWireModerationItem(item: ProtoModerationItem): ModerationItem {
  return {
    reportId: item.reportId,
    source: item.source,
    targetType: item.targetType,
    targetId: item.targetId,
    roomId: orNull(item.roomId),
    reporterId: orNull(item.reporterId),
    reason: item.reason,
    details: item.details,
    score: item.score,
    reasons: item.reasons,
    status: item.status,
    message: item.message ? toWireMessage(item.message) : null,
    createdAt: iso(item.createdAt),
    resolvedBy: orNull(item.resolvedBy),
    resolvedAt: iso(item.resolvedAt),
    resolutionNote: item.resolutionNote,
  };
}

const camel = (snake: string): string =>
  snake.replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase());

/**
 * The control plane names bad fields as proto fields (`reply_to_id`); the WebSocket client
 * sent `params.replyToId`. Messages stay as they are: they describe the value, not the wire.
 */
export function asProtocolError(error: unknown, rename: Record<string, string> = {}): VezaError {
  const veza = toVezaError(error);
  const field = veza.details.field;
  if (field === undefined) return veza;
  const mapped = rename[field] ?? camel(field);
  return new VezaError(
    veza.code,
    veza.message,
    { ...veza.details, field: `params.${mapped}` },
    { cause: veza },
  );
}
