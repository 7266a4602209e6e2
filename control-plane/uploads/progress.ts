/**
 * How an upload's outcome reaches its owner. The transcode worker publishes
 * `tracks.<id>.progress` on the bus (processing percentages, then ready or failed); this
 * module turns the final ones into stored notifications, "upload.ready" and
 * "upload.failed", which the notifier publishes on `notifications.user.<ownerId>` for the
 * WebSockets and NotificationService.StreamNotifications. The live percentages are not
 * stored: edges forward `tracks.*.progress` to the owner's sockets as they come.
 *
 * Every control-plane process hears each event; the dedupe key (one per track and outcome)
 * makes exactly one notification.
 */
import { ALL_TRACK_PROGRESS, trackProgressEventSchema } from '../../common/contracts/index.js';
import type { Sql } from '../../common/db/index.js';
import type { Logger } from '../../common/index.js';
import type { EventBus, Subscription } from '../../common/ports/index.js';
import type { Notifier } from '../notifications/index.js';
import { createUploadStore } from './store.js';

interface UploadOutcome {
  trackId: number;
  ownerId: number;
  title: string;
  status: 'ready' | 'failed';
  failureReason?: string;
}

const UPLOAD_READY = 'upload.ready';
const UPLOAD_FAILED = 'upload.failed';

/** Best effort: the track row already says what happened, the notification only tells. */
export async function notifyUploadOutcome(
  notifier: Notifier,
  log: Logger,
  outcome: UploadOutcome,
): Promise<void> {
  const data = {
    track_id: outcome.trackId,
    status: outcome.status,
    ...(outcome.failureReason ? { failure_reason: outcome.failureReason } : {}),
  };
  try {
    if (outcome.status === 'ready') {
      await notifier.notify(
        outcome.ownerId,
        UPLOAD_READY,
        'Your track is ready',
        `"${outcome.title}" has been processed and is ready to play.`,
        data,
        { dedupeKey: `${UPLOAD_READY}:${outcome.trackId}` },
      );
    } else {
      await notifier.notify(
        outcome.ownerId,
        UPLOAD_FAILED,
        'Your upload failed',
        `"${outcome.title}" could not be processed: ${outcome.failureReason ?? 'unknown reason'}`,
        data,
        { dedupeKey: `${UPLOAD_FAILED}:${outcome.trackId}` },
      );
    }
  } catch (error) {
    log.error({ err: error, trackId: outcome.trackId }, 'could not notify the uploader');
  }
}

interface UploadNotificationsDeps {
  sql: Sql;
  bus: EventBus;
  notifier: Notifier;
  log: Logger;
}

/** Subscribes to every track's progress; the returned subscription stops it. */
export function startUploadNotifications(deps: UploadNotificationsDeps): Subscription {
  const log = deps.log.child({ component: 'upload-notifications' });
  const store = createUploadStore(deps.sql);
  return deps.bus.subscribe(ALL_TRACK_PROGRESS, async (payload) => {
    const parsed = trackProgressEventSchema.safeParse(payload);
    if (!parsed.success) {
      log.warn('dropped a malformed track progress event');
      return;
    }
    const event = parsed.data;
    if (event.status === 'processing') return;
    try {
      const title = await store.titleOf(event.trackId);
      // A track deleted meanwhile has nobody left to tell.
      if (title === null) return;
      await notifyUploadOutcome(deps.notifier, log, {
        trackId: event.trackId,
        ownerId: event.ownerId,
        title,
        status: event.status,
        ...(event.failureReason ? { failureReason: event.failureReason } : {}),
      });
    } catch (error) {
      log.error({ err: error, trackId: event.trackId }, 'could not handle a track progress event');
    }
  });
}
