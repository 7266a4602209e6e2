/**
 * Chat, notifications and moderation over the signaling WebSocket (docs/signaling.md, "Chat").
 *
 * The control plane's ChatService and NotificationService are the authority
 * (control-plane/chat/README.md); the edge validates shapes here, forwards each call with the
 * user's token and delivers the bus events to the sockets that joined a room. Wire shapes are
 * camelCase like the rest of the protocol; ids are integers, times ISO 8601 strings, and the
 * proto's `bytes` metadata/data travel as JSON objects (null when empty or not an object).
 *
 * Browser-safe: zod only.
 */
import { z } from 'zod';
import {
  type ActivityType,
  CHAT_HISTORY_MAX_LIMIT,
  CHAT_MESSAGE_TYPES,
  CHAT_METADATA_MAX_BYTES,
  CLIENT_MESSAGE_ID_PATTERN,
  chatContentSchema,
  END_STREAM_REASON,
  type MessageEventType,
  QUEUE_STATUSES,
  REPORT_DETAILS_MAX,
  REPORT_REASON_MAX,
  REPORT_RESOLUTIONS,
  REPORT_TARGETS,
  ROOM_DESCRIPTION_MAX,
  ROOM_NAME_MAX,
} from '../../common/contracts/browser.js';

// The chat's rules are the contract's, shared with the control plane; re-exported as part of the protocol.
export {
  ACTIVITY_TYPES,
  type ActivityType,
  CHAT_HISTORY_MAX_LIMIT,
  CHAT_MAX_LENGTH,
  CHAT_MESSAGE_TYPES,
  CHAT_METADATA_MAX_BYTES,
  CLIENT_MESSAGE_ID_PATTERN,
  chatContentSchema,
  MESSAGE_EVENT_TYPES,
  type MessageEventType,
  QUEUE_STATUSES,
  REPORT_RESOLUTIONS,
  REPORT_TARGETS,
} from '../../common/contracts/browser.js';

const id = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
const optionalId = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional();
const limit = z.number().int().min(1).max(CHAT_HISTORY_MAX_LIMIT).optional();
const shortText = (max: number) => z.string().max(max, `must be at most ${max} characters`);

const metadataSchema = z
  .record(z.string(), z.unknown())
  .refine(
    (value) => new TextEncoder().encode(JSON.stringify(value)).length <= CHAT_METADATA_MAX_BYTES,
    `metadata must be at most ${CHAT_METADATA_MAX_BYTES} bytes as JSON`,
  );

/** Params schema of every chat, notification and moderation method (strict objects, like the media ones). */
export const chatParamsSchemas = {
  'chat.join': z
    .strictObject({
      roomId: id.optional(),
      /** Joins the chat room of this stream instead. */
      streamId: id.optional(),
      /** Catch-up: the messages after this id (paging forwards) instead of the latest page. */
      afterMessageId: optionalId,
      limit,
    })
    .refine((value) => (value.roomId === undefined) !== (value.streamId === undefined), {
      message: 'give either roomId or streamId',
      path: ['roomId'],
    }),
  'chat.leave': z.strictObject({ roomId: id }),
  'chat.createRoom': z.strictObject({
    name: z.string().min(1).max(ROOM_NAME_MAX),
    description: shortText(ROOM_DESCRIPTION_MAX).optional(),
    isPrivate: z.boolean().optional(),
  }),
  'chat.send': z.strictObject({
    roomId: id,
    content: chatContentSchema,
    messageType: z.enum(CHAT_MESSAGE_TYPES).optional(),
    metadata: metadataSchema.optional(),
    replyToId: optionalId,
    /** Chosen by the sender; a retry with the same id returns the message stored the first time. */
    clientMessageId: z
      .string()
      .regex(CLIENT_MESSAGE_ID_PATTERN, '1 to 64 letters, digits, ".", "_", ":" or "-"'),
  }),
  'chat.edit': z.strictObject({ messageId: id, content: chatContentSchema }),
  'chat.delete': z.strictObject({ messageId: id, reason: shortText(500).optional() }),
  'chat.history': z.strictObject({
    roomId: id,
    beforeMessageId: optionalId,
    afterMessageId: optionalId,
    limit,
  }),
  'chat.typing': z.strictObject({ roomId: id, typing: z.boolean().optional() }),
  'chat.report': z.strictObject({
    targetType: z.enum(REPORT_TARGETS),
    targetId: id,
    reason: z.string().min(1).max(REPORT_REASON_MAX),
    details: shortText(REPORT_DETAILS_MAX).optional(),
  }),
  'notifications.list': z.strictObject({
    page: z.number().int().min(1).max(1_000_000).optional(),
    pageSize: z.number().int().min(1).max(100).optional(),
    unreadOnly: z.boolean().optional(),
  }),
  'notifications.markRead': z
    .strictObject({
      notificationIds: z.array(id).max(100).optional(),
      all: z.boolean().optional(),
    })
    .refine((value) => value.all === true || (value.notificationIds?.length ?? 0) > 0, {
      message: 'give notificationIds or all: true',
      path: ['notificationIds'],
    }),
  'moderation.queue': z.strictObject({
    status: z.enum(QUEUE_STATUSES).optional(),
    limit,
    beforeReportId: optionalId,
  }),
  'moderation.resolve': z.strictObject({
    reportId: id,
    resolution: z.enum(REPORT_RESOLUTIONS),
    note: shortText(2000).optional(),
  }),
  'moderation.mute': z.strictObject({
    roomId: id,
    userId: id,
    durationS: z.number().int().min(1),
    reason: shortText(500).optional(),
  }),
  'moderation.unmute': z.strictObject({ roomId: id, userId: id }),
  'moderation.ban': z.strictObject({
    roomId: id,
    userId: id,
    /** 0 or absent: until lifted. */
    durationS: z.number().int().min(0).optional(),
    reason: shortText(500).optional(),
  }),
  'moderation.unban': z.strictObject({ roomId: id, userId: id }),
  'moderation.endStream': z.strictObject({
    streamId: id,
    reason: z
      .string()
      .regex(END_STREAM_REASON, 'a short lowercase token such as "terms_violation"')
      .optional(),
  }),
  /**
   * Hands the connection a fresh access token (same user): the edge acts on the user's behalf with
   * it, and the connection lives until it expires (see the `tokenExpiring` notification).
   */
  'auth.refresh': z.strictObject({ token: z.string().min(1).max(8192) }),
} as const;

export type ChatMethod = keyof typeof chatParamsSchemas;
export const CHAT_METHODS = Object.keys(chatParamsSchemas) as ChatMethod[];

export function isChatMethod(value: string): value is ChatMethod {
  return Object.hasOwn(chatParamsSchemas, value);
}

export type ChatMethodParams = { [M in ChatMethod]: z.input<(typeof chatParamsSchemas)[M]> };

/** A stored chat message as clients see it. */
export interface ChatMessage {
  messageId: number;
  roomId: number;
  userId: number;
  username: string;
  /** Empty once deleted. */
  content: string;
  messageType: string;
  metadata: Record<string, unknown> | null;
  replyToId: number | null;
  /** The sender's id for the send (only meaningful to the sender). */
  clientMessageId: string | null;
  deleted: boolean;
  createdAt: string;
  updatedAt: string;
}

export interface ChatRoom {
  roomId: number;
  name: string;
  description: string;
  ownerId: number;
  /** The stream whose chat this is, or null. */
  streamId: number | null;
  isPrivate: boolean;
  createdAt: string | null;
}

export interface RoomActivity {
  roomId: number;
  activityType: ActivityType;
  userId: number;
  username: string;
  /** `{until, reason}` for muted and banned; null otherwise. */
  data: Record<string, unknown> | null;
  timestamp: string;
}

export interface UserNotification {
  notificationId: number;
  /** e.g. "moderation.flagged", "moderation.report", "stream.live". */
  type: string;
  title: string;
  body: string;
  data: Record<string, unknown> | null;
  read: boolean;
  createdAt: string;
}

export interface ModerationItem {
  reportId: number;
  /** "user" (a report) or "automatic" (flagged by the moderation). */
  source: string;
  targetType: string;
  targetId: number;
  roomId: number | null;
  reporterId: number | null;
  reason: string;
  details: string;
  score: number;
  reasons: string[];
  /** "open", "dismissed", "actioned" or "approved". */
  status: string;
  /** The message, with its content, when the target is a message. */
  message: ChatMessage | null;
  createdAt: string | null;
  resolvedBy: number | null;
  resolvedAt: string | null;
  resolutionNote: string;
}

export interface MessagePage {
  /** Ascending by messageId. */
  messages: ChatMessage[];
  hasMore: boolean;
  /** The last id of the page (or the cursor given, for an empty forward page). */
  lastMessageId: number;
}

export interface ChatMethodResults {
  'chat.join': MessagePage & {
    room: ChatRoom;
    /** The caller (0 for an anonymous listener). */
    userId: number;
    /** True for anonymous listeners: they read, they do not send. */
    readOnly: boolean;
  };
  'chat.leave': Record<string, never>;
  'chat.createRoom': { room: ChatRoom };
  'chat.send': { message: ChatMessage };
  'chat.edit': { message: ChatMessage };
  'chat.delete': Record<string, never>;
  'chat.history': MessagePage;
  'chat.typing': Record<string, never>;
  'chat.report': { reportId: number };
  'notifications.list': {
    notifications: UserNotification[];
    unreadCount: number;
    page: number;
    pageSize: number;
    total: number;
  };
  'notifications.markRead': { updated: number };
  'moderation.queue': { items: ModerationItem[]; hasMore: boolean };
  'moderation.resolve': { item: ModerationItem | null };
  'moderation.mute': { expiresAt: string | null };
  'moderation.unmute': Record<string, never>;
  'moderation.ban': { expiresAt: string | null };
  'moderation.unban': Record<string, never>;
  'moderation.endStream': { previousStatus: string };
  'auth.refresh': { expiresAt: string };
}

export interface ChatNotifications {
  /** A message of a room this connection joined was created, edited or deleted. */
  'chat.message': { roomId: number; eventType: MessageEventType; message: ChatMessage };
  /** Presence, typing and sanctions in a joined room: ephemeral, never stored. */
  'chat.activity': RoomActivity;
  /**
   * The edge stopped sending this connection a room's events while it was not reading them, and
   * now sends them again: read the missed messages with `chat.history` forwards from
   * `afterMessageId` until `throughMessageId` is passed (or no more pages).
   */
  'chat.gap': ChatGap;
  /** A new notification of the signed-in user (after `notifications.list` on this connection). */
  'notifications.new': UserNotification;
  /**
   * Live processing progress of one of the signed-in user's uploads (after `notifications.list`
   * on this connection). Not stored: a client that missed some reads GET /tracks/:id.
   */
  'track.progress': TrackProgress;
}

/** The range of a room's message ids a slow connection was not sent (edits and deletions included). */
export interface ChatGap {
  roomId: number;
  /** Page `chat.history` forwards from here (exclusive). */
  afterMessageId: number;
  /** The newest id that was not sent. */
  throughMessageId: number;
}

/** One step of a track's processing, as the transcode worker reports it. */
export interface TrackProgress {
  trackId: number;
  status: 'processing' | 'ready' | 'failed';
  /** Percent, 0..100. */
  progress: number;
  /** The pipeline step (probe, loudnorm, renditions, waveform, ...), when the worker names one. */
  stage?: string;
  failureReason?: string;
}

export const CHAT_NOTIFICATIONS: readonly (keyof ChatNotifications)[] = [
  'chat.message',
  'chat.activity',
  'chat.gap',
  'notifications.new',
  'track.progress',
];
