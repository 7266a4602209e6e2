/**
 * The chat's limits and content rules: one definition for every side that checks them. The
 * control plane's ChatService is the authority (it trims, checks and stores); the edge and the
 * browser check the same rules first, so they refuse what it would refuse, with the same message.
 *
 * Browser-safe: zod only.
 */
import { z } from 'zod';

/** Characters (code points) in one message, after trimming. */
export const CHAT_MAX_LENGTH = 1000;
/** Bytes of a message's metadata (UTF-8 JSON on the WebSocket, raw bytes over gRPC). */
export const CHAT_METADATA_MAX_BYTES = 4 * 1024;
/** A client message id: chosen by the sender, so a retried send stores nothing new. */
export const CLIENT_MESSAGE_ID_MAX = 64;
export const CLIENT_MESSAGE_ID_CHARS = /^[A-Za-z0-9._:-]*$/;
export const CLIENT_MESSAGE_ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;
/** The message types a client may send; an empty message_type over gRPC means "text". */
export const CHAT_MESSAGE_TYPES = ['text', 'emote', 'reaction'] as const;
export type ChatMessageType = (typeof CHAT_MESSAGE_TYPES)[number];

export const ROOM_NAME_MAX = 100;
export const ROOM_DESCRIPTION_MAX = 500;
export const REPORT_REASON_MAX = 500;
export const REPORT_DETAILS_MAX = 2000;

export const CHAT_HISTORY_DEFAULT_LIMIT = 50;
export const CHAT_HISTORY_MAX_LIMIT = 100;

/** What happened to a stored message: the bus event and the WebSocket notification say which. */
export const MESSAGE_EVENT_TYPES = ['created', 'edited', 'deleted'] as const;
export type MessageEventType = (typeof MESSAGE_EVENT_TYPES)[number];

export const ACTIVITY_TYPES = [
  'join',
  'leave',
  'typing',
  'stopped_typing',
  'muted',
  'unmuted',
  'banned',
] as const;
export type ActivityType = (typeof ACTIVITY_TYPES)[number];

export const REPORT_TARGETS = ['message', 'user', 'stream'] as const;
export const REPORT_RESOLUTIONS = ['dismissed', 'actioned', 'approved'] as const;
export const QUEUE_STATUSES = ['open', 'resolved', 'all'] as const;

/** Longest mute and ban a moderator may give (a ban of 0 lasts until lifted). */
export const MUTE_MAX_S = 30 * 24 * 3600;
export const BAN_MAX_S = 365 * 24 * 3600;

/** A moderator's reason to end a stream: a short token. */
export const END_STREAM_REASON = /^[a-z][a-z0-9_]{0,63}$/;

// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
export const CONTROL_EXCEPT_NEWLINE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
export const CONTROL = /[\u0000-\u001f\u007f]/;

export const codePoints = (value: string): number => [...value].length;

/** A message's content: trimmed, then 1 to CHAT_MAX_LENGTH characters, no control characters but newlines. */
export const chatContentSchema = z
  .string()
  .trim()
  .refine((value) => value.length > 0, 'content is required')
  .refine(
    (value) => codePoints(value) <= CHAT_MAX_LENGTH,
    `content must be at most ${CHAT_MAX_LENGTH} characters`,
  )
  .refine((value) => !CONTROL_EXCEPT_NEWLINE.test(value), 'content must not contain control characters');
