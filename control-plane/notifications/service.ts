/**
 * veza.notification.NotificationService.
 *
 * - SendNotification: another Veza service (API key without a user token) or an admin.
 * - GetNotifications, MarkAsRead, StreamNotifications, Follow, Unfollow, ListFollowing:
 *   the signed-in user, about their own notifications only.
 */

import {
  NotFoundError,
  notificationSubject,
  PermissionDeniedError,
  parseNotificationEvent,
  RateLimitedError,
} from '../../common/contracts/index.js';
import type { Sql } from '../../common/db/index.js';
import type { Logger } from '../../common/index.js';
import type { EventBus } from '../../common/ports/index.js';
import {
  type Notification,
  NotificationServiceService,
} from '../../proto/gen/veza/notification/notification.js';
import { bindService, type CallContext, type ServiceBinding } from '../grpc/index.js';
import { createFollowStore } from './follows.js';
import type { Notifier } from './notifier.js';
import { createNotificationStore } from './store.js';
import {
  broadcasterSchema,
  getNotificationsSchema,
  markAsReadSchema,
  parseInput,
  sendNotificationSchema,
  streamNotificationsSchema,
} from './validation.js';

export interface NotificationServiceDeps {
  sql: Sql;
  bus: EventBus;
  log: Logger;
  notifier: Notifier;
}

/** A StreamNotifications client that stops reading is cut off past this many queued notifications. */
export const STREAM_BUFFER_LIMIT = 256;

function requireUser(ctx: CallContext): number {
  if (!ctx.user) throw new PermissionDeniedError('this call needs a signed-in user');
  return ctx.user.userId;
}

export function createNotificationService(deps: NotificationServiceDeps): ServiceBinding {
  const store = createNotificationStore(deps.sql);
  const follows = createFollowStore(deps.sql);

  return bindService(NotificationServiceService, {
    sendNotification: {
      policy: 'jwt-or-api-key',
      handler: async (request, ctx) => {
        const actsAsService = ctx.service && !ctx.user;
        if (!actsAsService && !ctx.user?.roles.includes('admin')) {
          throw new PermissionDeniedError('sending a notification needs a service API key or the admin role');
        }
        const input = parseInput(sendNotificationSchema, request);
        const notification = await deps.notifier.notify(
          input.userId,
          input.notificationType,
          input.title,
          input.body,
          input.data,
        );
        if (!notification) throw new NotFoundError(`user ${input.userId} not found`);
        return { success: true, notification };
      },
    },

    getNotifications: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const userId = requireUser(ctx);
        const input = parseInput(getNotificationsSchema, {
          page: request.pagination?.page ?? 0,
          pageSize: request.pagination?.pageSize ?? 0,
          unreadOnly: request.unreadOnly,
        });
        const result = await store.page(userId, input);
        return {
          notifications: result.items,
          pagination: {
            page: input.page,
            pageSize: input.pageSize,
            total: result.total,
            totalPages: Math.ceil(result.total / input.pageSize),
          },
          unreadCount: result.unread,
        };
      },
    },

    markAsRead: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const userId = requireUser(ctx);
        const input = parseInput(markAsReadSchema, request);
        const updated = await store.markRead(userId, input.all ? 'all' : input.notificationIds);
        return { success: true, updated };
      },
    },

    streamNotifications: {
      policy: 'jwt',
      handler: async (request, stream, ctx) => {
        const userId = requireUser(ctx);
        const { afterNotificationId } = parseInput(streamNotificationsSchema, request);
        let fail: (error: Error) => void = () => {};
        const ended = new Promise<void>((resolve, reject) => {
          fail = reject;
          if (ctx.signal.aborted) resolve();
          ctx.signal.addEventListener('abort', () => resolve(), { once: true });
        });
        ended.catch(() => undefined);
        let dropped = false;
        const write = (notification: Notification) => {
          if (dropped) return;
          stream.write(notification);
          if (stream.writableLength > STREAM_BUFFER_LIMIT) {
            dropped = true;
            fail(
              new RateLimitedError(
                'notification stream dropped: the client is not reading fast enough',
                1000,
              ),
            );
          }
        };
        // Subscribe, hold live ones back while the stored ones go out, then drop what was sent.
        const held: Notification[] = [];
        let live = false;
        const subscription = deps.bus.subscribe(notificationSubject(userId), (payload) => {
          const notification = parseNotificationEvent(payload);
          if (!notification || notification.userId !== userId) {
            ctx.log.warn('dropped a malformed notification event');
            return;
          }
          if (live) write(notification);
          else held.push(notification);
        });
        try {
          await subscription.ready;
          let last = afterNotificationId;
          if (afterNotificationId > 0) {
            for (const notification of await store.after(
              userId,
              afterNotificationId,
              STREAM_BUFFER_LIMIT / 2,
            )) {
              write(notification);
              last = notification.notificationId;
            }
          }
          for (const notification of held.splice(0))
            if (notification.notificationId > last) write(notification);
          live = true;
          await ended;
        } finally {
          subscription.unsubscribe();
        }
      },
    },

    follow: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const { broadcasterId } = parseInput(broadcasterSchema, request);
        await follows.follow(requireUser(ctx), broadcasterId);
        return { success: true };
      },
    },

    unfollow: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const { broadcasterId } = parseInput(broadcasterSchema, request);
        await follows.unfollow(requireUser(ctx), broadcasterId);
        return { success: true };
      },
    },

    listFollowing: {
      policy: 'jwt',
      handler: async (_request, ctx) => ({ following: await follows.following(requireUser(ctx)) }),
    },
  });
}
