/** Input rules of NotificationService: each failure is an InvalidArgumentError naming the snake_case field. */
import { z } from 'zod';

export const PAGE_SIZE_DEFAULT = 20;
export const PAGE_SIZE_MAX = 100;
export const TITLE_MAX = 200;
export const BODY_MAX = 2000;
export const DATA_MAX_BYTES = 16 * 1024;

// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;
const TYPE = /^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$/;

const positiveId = (field: string) =>
  z
    .number({ error: `${field} must be a positive integer` })
    .int(`${field} must be a positive integer`)
    .positive(`${field} must be a positive integer`);

const text = (field: string, min: number, max: number) =>
  z
    .string()
    .trim()
    .min(min, `${field} is required`)
    .max(max, `${field} must be at most ${max} characters`)
    .refine((value) => !CONTROL.test(value), `${field} must not contain control characters`);

export const sendNotificationSchema = z.object({
  userId: positiveId('user_id'),
  notificationType: z
    .string()
    .max(64, 'notification_type must be at most 64 characters')
    .regex(TYPE, 'notification_type must look like "stream.live": lowercase words separated by dots'),
  title: text('title', 1, TITLE_MAX),
  body: text('body', 0, BODY_MAX),
  data: z
    .instanceof(Buffer)
    .refine((value) => value.length <= DATA_MAX_BYTES, `data must be at most ${DATA_MAX_BYTES} bytes`)
    .transform((value, ctx) => {
      if (value.length === 0) return null;
      try {
        return JSON.parse(value.toString('utf8')) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'data must be UTF-8 JSON' });
        return z.NEVER;
      }
    }),
});

export const getNotificationsSchema = z.object({
  page: z
    .number()
    .int('page must be an integer')
    .min(0, 'page must not be negative')
    .transform((value) => value || 1),
  pageSize: z
    .number()
    .int('page_size must be an integer')
    .min(0, 'page_size must not be negative')
    .max(PAGE_SIZE_MAX, `page_size must be at most ${PAGE_SIZE_MAX}`)
    .transform((value) => value || PAGE_SIZE_DEFAULT),
  unreadOnly: z.boolean(),
});

export const markAsReadSchema = z
  .object({
    notificationIds: z
      .array(positiveId('notification_ids'))
      .max(1000, 'notification_ids may hold at most 1000 ids'),
    all: z.boolean(),
  })
  .refine((value) => value.all || value.notificationIds.length > 0, {
    message: 'give notification_ids, or set all',
    path: ['notificationIds'],
  });

export const streamNotificationsSchema = z.object({
  afterNotificationId: z
    .number()
    .int('after_notification_id must be an integer')
    .min(0, 'after_notification_id must not be negative'),
});

export const broadcasterSchema = z.object({ broadcasterId: positiveId('broadcaster_id') });

export { parseInput } from '../parse-input.js';
