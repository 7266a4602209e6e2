/**
 * Creating notifications from other modules (moderation, streams, uploads): store them,
 * then publish each on `notifications.user.<userId>` for the edges and StreamNotifications.
 * PostgreSQL is the truth; a failed publish is logged and the notification stays readable
 * with GetNotifications.
 */

import { notificationSubject, toNotificationEvent } from '../../common/contracts/index.js';
import type { Sql } from '../../common/db/index.js';
import { counter, type Logger } from '../../common/index.js';
import type { EventBus } from '../../common/ports/index.js';
import type { Notification } from '../../proto/gen/veza/notification/notification.js';
import { createNotificationStore } from './store.js';

export interface NotifierDeps {
  sql: Sql;
  bus: EventBus;
  log: Logger;
}

export interface NotifyOptions {
  /** Makes a retried or repeated event create one notification per user, e.g. "stream.live:42". */
  dedupeKey?: string;
}

/** The roles that see the moderation queue. */
export const MODERATOR_ROLES = ['moderator', 'admin'] as const;

const created = counter('veza_notifications_created_total', 'Notifications created, by type', ['type']);

export interface Notifier {
  /** One user. `data` is any JSON value (an object, usually); it reaches clients as UTF-8 JSON bytes. */
  notify(
    userId: number,
    type: string,
    title: string,
    body: string,
    data?: unknown,
    options?: NotifyOptions,
  ): Promise<Notification | null>;
  /** Several users at once; returns the notifications created. */
  notifyMany(
    userIds: readonly number[],
    type: string,
    title: string,
    body: string,
    data?: unknown,
    options?: NotifyOptions,
  ): Promise<Notification[]>;
  /** Every moderator and admin. */
  notifyModerators(type: string, title: string, body: string, data?: unknown): Promise<Notification[]>;
}

export function createNotifier(deps: NotifierDeps): Notifier {
  const store = createNotificationStore(deps.sql);
  const log = deps.log.child({ component: 'notifier' });

  const publish = async (notifications: readonly Notification[]) => {
    for (const notification of notifications) {
      created.inc({ type: notification.notificationType });
      try {
        await deps.bus.publish(notificationSubject(notification.userId), toNotificationEvent(notification));
      } catch (error) {
        log.error(
          { err: error, notificationId: notification.notificationId },
          'could not publish a notification',
        );
      }
    }
  };

  const notifyMany: Notifier['notifyMany'] = async (userIds, type, title, body, data, options) => {
    const rows = await store.insertFor(userIds, {
      type,
      title,
      body,
      data: data ?? null,
      dedupeKey: options?.dedupeKey,
    });
    await publish(rows);
    return rows;
  };

  return {
    notifyMany,
    async notify(userId, type, title, body, data, options) {
      const [row] = await notifyMany([userId], type, title, body, data, options);
      return row ?? null;
    },
    async notifyModerators(type, title, body, data) {
      return notifyMany(await store.usersWithRoles(MODERATOR_ROLES), type, title, body, data);
    },
  };
}
