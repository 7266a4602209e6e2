/**
 * Notifications: NotificationService, the notifier other modules use to create them, the
 * bus event edges subscribe to, and follows with their "stream.live" notifications.
 */
export { createFollowStore, type FollowNotifierDeps, startLiveNotifications } from './follows.js';
export {
  createNotifier,
  MODERATOR_ROLES,
  type Notifier,
  type NotifierDeps,
  type NotifyOptions,
} from './notifier.js';
export { createNotificationService, type NotificationServiceDeps, STREAM_BUFFER_LIMIT } from './service.js';
