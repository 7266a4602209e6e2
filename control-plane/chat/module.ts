/**
 * Chat, moderation and notifications wired together for the control plane: the two gRPC
 * services, the notifier other modules use, the chat rooms streams open, and the
 * `stream.started` listener that tells followers a broadcaster went live. Moderation reaches
 * rooms, messages and sanctions through the chat store handed to it here.
 */

import type { Sql } from '../../common/db/index.js';
import type { Logger } from '../../common/index.js';
import type { EventBus, RateLimiter } from '../../common/ports/index.js';
import type { ServiceBinding } from '../grpc/index.js';
import {
  type ContentScorer,
  createModeration,
  createScorer,
  type ScorerOptions,
} from '../moderation/index.js';
import {
  createNotificationService,
  createNotifier,
  type Notifier,
  startLiveNotifications,
} from '../notifications/index.js';
import type { StreamChatRooms } from '../streams/index.js';
import type { ChatRateLimits } from './chat.js';
import { createRoomStates, type RoomStates } from './room-states.js';
import { createChatService } from './service.js';
import { type ChatStore, createChatStore } from './store.js';

/**
 * The chat store as moderation uses it, with each committed sanction applied to this control
 * plane's memory and announced to the others (`chat.state.<roomId>`) before the moderator's
 * call returns. The batch insert checks sanctions in PostgreSQL too, so a control plane the
 * event has not reached yet still refuses the sanctioned user's next message.
 */
function sanctionsAnnounced(store: ChatStore, states: RoomStates): ChatStore {
  return {
    ...store,
    async mute(input) {
      const until = await store.mute(input);
      await states.announce({
        type: 'muted',
        room_id: input.roomId,
        user_id: input.userId,
        until: until.toISOString(),
      });
      return until;
    },
    async unmute(roomId, userId) {
      const changed = await store.unmute(roomId, userId);
      if (changed) await states.announce({ type: 'unmuted', room_id: roomId, user_id: userId });
      return changed;
    },
    async ban(input) {
      const until = await store.ban(input);
      await states.announce({
        type: 'banned',
        room_id: input.roomId,
        user_id: input.userId,
        until: until?.toISOString() ?? null,
      });
      return until;
    },
    async unban(roomId, userId) {
      const changed = await store.unban(roomId, userId);
      if (changed) await states.announce({ type: 'unbanned', room_id: roomId, user_id: userId });
      return changed;
    },
  };
}

export interface ChatModuleOptions {
  /**
   * The external moderation service (MODERATION_URL) and its breaker settings; the local
   * scorer alone when no url is set.
   */
  moderation?: ScorerOptions & { threshold?: number };
  /** Replaces the scorer altogether (tests). */
  scorer?: ContentScorer;
  limits?: Partial<ChatRateLimits>;
}

interface ChatModuleDeps extends ChatModuleOptions {
  sql: Sql;
  bus: EventBus;
  rateLimiter: RateLimiter;
  log: Logger;
}

interface ChatModule {
  chatService: ServiceBinding;
  notificationService: ServiceBinding;
  /** For other modules (uploads, streams) that create notifications. */
  notifier: Notifier;
  /** For the streams module: the chat room a stream opens as it starts. */
  streamRooms: StreamChatRooms;
  /** Stops the listeners and the scorer's timers; call after the gRPC server closed. */
  close(): void;
}

export function startChatModule(deps: ChatModuleDeps): ChatModule {
  const { sql, bus, log } = deps;
  const store = createChatStore(sql);
  const states = createRoomStates({ store, bus, log });
  const notifier = createNotifier({ sql, bus, log });
  const scorer = deps.scorer ?? createScorer(deps.moderation ?? {}, log);
  const moderation = createModeration({
    sql,
    chat: sanctionsAnnounced(store, states),
    bus,
    log,
    notifier,
    scorer,
    rateLimiter: deps.rateLimiter,
    threshold: deps.moderation?.threshold,
  });
  const live = startLiveNotifications({ sql, bus, log, notifier });
  return {
    chatService: createChatService({
      store,
      states,
      bus,
      rateLimiter: deps.rateLimiter,
      moderation,
      log,
      limits: deps.limits,
    }),
    notificationService: createNotificationService({ sql, bus, log, notifier }),
    notifier,
    streamRooms: store,
    close() {
      live.unsubscribe();
      states.close();
      scorer.close?.();
    },
  };
}
