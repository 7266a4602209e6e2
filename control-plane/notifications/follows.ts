/**
 * Following broadcasters, and the "stream.live" notification their followers get when the
 * streams module publishes `stream.started`. Every control-plane process hears the event; the
 * notification's dedupe key (one per stream) makes exactly one of them create it.
 */

import {
  InvalidArgumentError,
  NotFoundError,
  STREAM_STARTED,
  streamStartedEventSchema,
} from '../../common/contracts/index.js';
import type { Sql } from '../../common/db/index.js';
import type { Logger } from '../../common/index.js';
import type { EventBus, Subscription } from '../../common/ports/index.js';
import type { FollowedBroadcaster } from '../../proto/gen/veza/notification/notification.js';
import { userExists, usernamesOf } from '../auth/index.js';
import type { Notifier } from './notifier.js';

export function createFollowStore(sql: Sql) {
  return {
    async follow(followerId: number, broadcasterId: number): Promise<void> {
      if (followerId === broadcasterId)
        throw new InvalidArgumentError('you cannot follow yourself', 'broadcaster_id');
      if (!(await userExists(sql, broadcasterId))) throw new NotFoundError(`user ${broadcasterId} not found`);
      await sql`
        insert into follows (follower_id, broadcaster_id) values (${followerId}, ${broadcasterId})
        on conflict do nothing`;
    },

    async unfollow(followerId: number, broadcasterId: number): Promise<boolean> {
      const rows = await sql`
        delete from follows where follower_id = ${followerId} and broadcaster_id = ${broadcasterId} returning 1`;
      return rows.length > 0;
    },

    async following(followerId: number): Promise<FollowedBroadcaster[]> {
      const rows = await sql<{ broadcaster_id: number; created_at: Date }[]>`
        select broadcaster_id, created_at from follows
        where follower_id = ${followerId}
        order by created_at desc, broadcaster_id`;
      const usernames = await usernamesOf(
        sql,
        rows.map((row) => row.broadcaster_id),
      );
      // A broadcaster deleted since the read has taken the follow with them.
      return rows.flatMap((row) => {
        const username = usernames.get(row.broadcaster_id);
        return username === undefined
          ? []
          : [{ userId: row.broadcaster_id, username, followedAt: row.created_at }];
      });
    },

    async followers(broadcasterId: number): Promise<number[]> {
      const rows = await sql<{ follower_id: number }[]>`
        select follower_id from follows where broadcaster_id = ${broadcasterId}`;
      return rows.map((row) => row.follower_id);
    },
  };
}

interface FollowNotifierDeps {
  sql: Sql;
  bus: EventBus;
  log: Logger;
  notifier: Notifier;
}

/** Subscribes to `stream.started`; the returned subscription stops it. */
export function startLiveNotifications(deps: FollowNotifierDeps): Subscription {
  const follows = createFollowStore(deps.sql);
  const log = deps.log.child({ component: 'live-notifications' });
  return deps.bus.subscribe(STREAM_STARTED, async (payload) => {
    const parsed = streamStartedEventSchema.safeParse(payload);
    if (!parsed.success) {
      log.warn('dropped a malformed stream.started event');
      return;
    }
    const event = parsed.data;
    // A private stream is not announced: its followers could not open it.
    if (!event.is_public) return;
    try {
      const followers = await follows.followers(event.owner_id);
      await deps.notifier.notifyMany(
        followers,
        'stream.live',
        `${event.owner_username} is live`,
        event.title,
        { stream_id: event.stream_id, broadcaster_id: event.owner_id, chat_room_id: event.chat_room_id },
        { dedupeKey: `stream.live:${event.stream_id}` },
      );
    } catch (error) {
      log.error({ err: error, streamId: event.stream_id }, 'could not notify the followers of a live stream');
    }
  });
}
