/**
 * Input rules of ChatService, checked at the boundary. Each failure is an InvalidArgumentError
 * naming the snake_case field of the proto.
 */
import { z } from 'zod';
import {
  BAN_MAX_S,
  CHAT_HISTORY_DEFAULT_LIMIT,
  CHAT_HISTORY_MAX_LIMIT,
  CHAT_MESSAGE_TYPES,
  CHAT_METADATA_MAX_BYTES,
  CLIENT_MESSAGE_ID_CHARS,
  CLIENT_MESSAGE_ID_MAX,
  CONTROL,
  CONTROL_EXCEPT_NEWLINE,
  chatContentSchema,
  codePoints,
  END_STREAM_REASON,
  MUTE_MAX_S,
  QUEUE_STATUSES,
  REPORT_DETAILS_MAX,
  REPORT_REASON_MAX,
  REPORT_RESOLUTIONS,
  REPORT_TARGETS,
  ROOM_DESCRIPTION_MAX,
  ROOM_NAME_MAX,
} from '../../common/contracts/index.js';
import { parseInputNamingField as parseInput } from '../parse-input.js';

const positiveId = (field: string) =>
  z
    .number({ error: `${field} must be a positive integer` })
    .int(`${field} must be a positive integer`)
    .positive(`${field} must be a positive integer`);

const optionalId = (field: string) =>
  z.number().int(`${field} must be an integer`).min(0, `${field} must not be negative`);

const line = (field: string, min: number, max: number) =>
  z
    .string()
    .trim()
    .refine((value) => codePoints(value) >= min, `${field} is required`)
    .refine((value) => codePoints(value) <= max, `${field} must be at most ${max} characters`)
    .refine((value) => !CONTROL.test(value), `${field} must not contain control characters`);

/** Free text that may span lines. */
const paragraph = (field: string, max: number) =>
  z
    .string()
    .trim()
    .refine((value) => codePoints(value) <= max, `${field} must be at most ${max} characters`)
    .refine((value) => !CONTROL_EXCEPT_NEWLINE.test(value), `${field} must not contain control characters`);

export const contentSchema = chatContentSchema;

export const sendMessageSchema = z.object({
  roomId: positiveId('room_id'),
  content: contentSchema,
  messageType: z
    .string()
    .transform((value) => value || 'text')
    .pipe(
      z.enum(CHAT_MESSAGE_TYPES, { error: `message_type must be one of: ${CHAT_MESSAGE_TYPES.join(', ')}` }),
    ),
  metadata: z
    .instanceof(Buffer)
    .refine(
      (value) => value.length <= CHAT_METADATA_MAX_BYTES,
      `metadata must be at most ${CHAT_METADATA_MAX_BYTES} bytes`,
    ),
  replyToId: optionalId('reply_to_id'),
  clientMessageId: z
    .string()
    .max(CLIENT_MESSAGE_ID_MAX, `client_message_id must be at most ${CLIENT_MESSAGE_ID_MAX} characters`)
    .regex(CLIENT_MESSAGE_ID_CHARS, 'client_message_id may hold letters, digits, ".", "_", ":" and "-"'),
});
export type SendMessageInput = z.output<typeof sendMessageSchema>;

export const getMessagesSchema = z.object({
  roomId: positiveId('room_id'),
  limit: z
    .number()
    .int('limit must be an integer')
    .min(0, 'limit must not be negative')
    .max(CHAT_HISTORY_MAX_LIMIT, `limit must be at most ${CHAT_HISTORY_MAX_LIMIT}`)
    .transform((value) => value || CHAT_HISTORY_DEFAULT_LIMIT),
  beforeMessageId: optionalId('before_message_id'),
  afterMessageId: optionalId('after_message_id'),
});

export const roomIdSchema = z.object({ roomId: positiveId('room_id') });
export const streamMessagesSchema = z.object({
  roomId: positiveId('room_id'),
  lastMessageId: optionalId('last_message_id'),
});

export const createRoomSchema = z.object({
  name: line('name', 1, ROOM_NAME_MAX),
  description: line('description', 0, ROOM_DESCRIPTION_MAX),
  isPrivate: z.boolean(),
});

export const editMessageSchema = z.object({ messageId: positiveId('message_id'), content: contentSchema });
export const deleteMessageSchema = z.object({
  messageId: positiveId('message_id'),
  reason: line('reason', 0, REPORT_REASON_MAX),
});

export const SENDABLE_ACTIVITY = ['typing', 'stopped_typing', 'join', 'leave'] as const;
export const roomActivitySchema = z.object({
  roomId: positiveId('room_id'),
  activityType: z.enum(SENDABLE_ACTIVITY, {
    error: `activity_type must be one of: ${SENDABLE_ACTIVITY.join(', ')}`,
  }),
});

export const reportSchema = z.object({
  targetType: z.enum(REPORT_TARGETS, {
    error: 'target_type must be "message", "user" or "stream"',
  }),
  targetId: positiveId('target_id'),
  reason: line('reason', 1, REPORT_REASON_MAX),
  details: paragraph('details', REPORT_DETAILS_MAX),
});

export const muteSchema = z.object({
  roomId: positiveId('room_id'),
  userId: positiveId('user_id'),
  durationS: z
    .number()
    .int('duration_s must be an integer')
    .min(1, 'duration_s must be at least 1')
    .max(MUTE_MAX_S, `duration_s must be at most ${MUTE_MAX_S} (30 days)`),
  reason: line('reason', 0, REPORT_REASON_MAX),
});

export const banSchema = z.object({
  roomId: positiveId('room_id'),
  userId: positiveId('user_id'),
  durationS: z
    .number()
    .int('duration_s must be an integer')
    .min(0, 'duration_s must not be negative')
    .max(BAN_MAX_S, `duration_s must be at most ${BAN_MAX_S} (a year); 0 bans until lifted`)
    .transform((value) => (value === 0 ? null : value)),
  reason: line('reason', 0, REPORT_REASON_MAX),
});

export const sanctionTargetSchema = z.object({
  roomId: positiveId('room_id'),
  userId: positiveId('user_id'),
});

export const endStreamSchema = z.object({
  streamId: positiveId('stream_id'),
  reason: z
    .string()
    .trim()
    .refine((value) => value === '' || END_STREAM_REASON.test(value), {
      message: 'reason must be a short lowercase token such as "terms_violation"',
    }),
});

export const queueSchema = z.object({
  status: z
    .string()
    .transform((value) => value || 'open')
    .pipe(z.enum(QUEUE_STATUSES, { error: 'status must be "open", "resolved" or "all"' })),
  limit: z
    .number()
    .int('limit must be an integer')
    .min(0, 'limit must not be negative')
    .max(CHAT_HISTORY_MAX_LIMIT, `limit must be at most ${CHAT_HISTORY_MAX_LIMIT}`)
    .transform((value) => value || CHAT_HISTORY_DEFAULT_LIMIT),
  beforeReportId: optionalId('before_report_id'),
});

export const resolveSchema = z.object({
  reportId: positiveId('report_id'),
  resolution: z.enum(REPORT_RESOLUTIONS, {
    error: 'resolution must be "dismissed", "actioned" or "approved"',
  }),
  note: paragraph('note', REPORT_DETAILS_MAX),
});

export { parseInput };
