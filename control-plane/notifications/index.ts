/**
 * Notifications: NotificationService, the notifier other modules use to create them, the
 * bus event edges subscribe to, and follows with their "stream.live" notifications.
 */
export { startLiveNotifications } from './follows.js';
export { createNotifier, type Notifier } from './notifier.js';
export { createNotificationService } from './service.js';
