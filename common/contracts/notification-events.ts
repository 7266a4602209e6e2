/**
 * What the control plane publishes for each new notification, on `notifications.user.<userId>`,
 * so every edge can push it to that user's open WebSockets.
 *
 * The payload is the proto `Notification` as proto3 JSON with the proto's snake_case field
 * names (`Notification.fromJSON` reads it): `data` is base64 of UTF-8 JSON, `created_at` ISO 8601.
 */
import { z } from 'zod';
import type { Notification } from '../../proto/gen/veza/notification/notification.js';

export const notificationSubject = (userId: number): string => `notifications.user.${userId}`;
/** Every user's notifications, for an edge that serves many users. */
export const ALL_NOTIFICATIONS = 'notifications.user.*';

export const notificationEventSchema = z.object({
  notification_id: z.number().int().positive(),
  user_id: z.number().int().positive(),
  notification_type: z.string().min(1),
  title: z.string(),
  body: z.string(),
  data: z.string(),
  read: z.boolean(),
  created_at: z.string(),
});
export type NotificationEvent = z.infer<typeof notificationEventSchema>;

export function toNotificationEvent(notification: Notification): NotificationEvent {
  return {
    notification_id: notification.notificationId,
    user_id: notification.userId,
    notification_type: notification.notificationType,
    title: notification.title,
    body: notification.body,
    data: notification.data.toString('base64'),
    read: notification.read,
    created_at: (notification.createdAt ?? new Date()).toISOString(),
  };
}

/** The Notification of a bus payload, or null when another process sent something malformed. */
export function parseNotificationEvent(payload: unknown): Notification | null {
  const parsed = notificationEventSchema.safeParse(payload);
  if (!parsed.success) return null;
  const event = parsed.data;
  return {
    notificationId: event.notification_id,
    userId: event.user_id,
    notificationType: event.notification_type,
    title: event.title,
    body: event.body,
    data: Buffer.from(event.data, 'base64'),
    read: event.read,
    createdAt: new Date(event.created_at),
  };
}
