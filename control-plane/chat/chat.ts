/**
 * The chat itself, independent of any transport: rooms, membership, sending (the seed's
 * "Envoi de Message"), history, edits and deletions, ephemeral activity, and a room feed
 * with catch-up for streaming readers.
 *
 * Sending, in order: validate -> (retry? return the stored message) -> room, ban, membership,
 * mute -> reply_to_id -> rate limit -> moderation score -> store -> publish -> return.
 * A message the moderation refuses is stored flagged, queued for the moderators and never
 * published; the sender gets FAILED_PRECONDITION "message not sent: <reasons>".
 *
 * Who may read a room (history, feeds, activity): its members, moderators, and service
 * callers (the edge, with its API key and no user token).
 */
import {
  type ActivityType,
  activitySubject,
  CHAT_HISTORY_MAX_LIMIT,
  FailedPreconditionError,
  InvalidArgumentError,
  type MessageEventType,
  NotFoundError,
  PermissionDeniedError,
  parseMessageEvent,
  RateLimitedError,
  roomSubject,
  toActivityEvent,
  toMessageEvent,
} from '../../common/contracts/index.js';
import type { Sql } from '../../common/db/index.js';
import { counter, type Logger, type UserRole } from '../../common/index.js';
import type { EventBus, RateLimiter, RateRule, Subscription } from '../../common/ports/index.js';
import type { ChatMessage, Message, Room, RoomActivity } from '../../proto/gen/veza/chat/chat.js';
import { usernamesOf } from '../auth/index.js';
import { isModerator, type Moderation, type Verdict } from '../moderation/index.js';
import { KeyedQueue } from './keyed-queue.js';
import { ACTIVITY_LIMIT, CHAT_BURST, CHAT_SUSTAINED, REPEAT_SAMPLE, REPEAT_WINDOW_S } from './limits.js';
import { createChatStore, type MessageRow, type RoomRow, toChatMessage, toRoom } from './store.js';
import type { SendMessageInput } from './validation.js';

export interface ChatUser {
  userId: number;
  username: string;
  roles: readonly UserRole[];
}

/** A reader is a user, or null for a service caller (the edge). */
export type ChatReader = ChatUser | null;

export interface ChatRateLimits {
  burst: Omit<RateRule, 'name'>;
  sustained: Omit<RateRule, 'name'>;
  activity: Omit<RateRule, 'name'>;
}

interface ChatDeps {
  sql: Sql;
  bus: EventBus;
  rateLimiter: RateLimiter;
  moderation: Moderation;
  log: Logger;
  limits?: Partial<ChatRateLimits>;
}

const sent = counter('veza_chat_messages_total', 'Chat messages, by outcome', ['outcome']);

/** Rule names carry their limits: two control planes in one process with other limits keep apart counters. */
const rule = (name: string, limit: Omit<RateRule, 'name'>): RateRule => ({
  name: `${name}-${limit.points}-${limit.durationS}`,
  ...limit,
});

function notSent(reasons: readonly string[]): FailedPreconditionError {
  return new FailedPreconditionError(`message not sent: ${reasons.join(', ') || 'it breaks the chat rules'}`);
}

export function createChat(deps: ChatDeps) {
  const store = createChatStore(deps.sql);
  const log = deps.log.child({ component: 'chat' });
  const rooms = new KeyedQueue();
  const burst = rule('chat-burst', deps.limits?.burst ?? CHAT_BURST);
  const sustained = rule('chat-sustained', deps.limits?.sustained ?? CHAT_SUSTAINED);
  const activityRule = rule('chat-activity', deps.limits?.activity ?? ACTIVITY_LIMIT);

  const loadRoom = async (roomId: number): Promise<RoomRow> => {
    const room = await store.room(roomId);
    if (!room) throw new NotFoundError(`room ${roomId} not found`);
    return room;
  };

  /** A private room (or a private stream's chat) is "not found" for outsiders, so it does not leak. */
  const visible = (room: RoomRow, user: ChatUser): boolean =>
    !room.is_private || room.owner_id === user.userId || isModerator(user);

  const publish = async (subject: string, payload: unknown) => {
    try {
      await deps.bus.publish(subject, payload);
    } catch (error) {
      // The database is the truth: readers catch up from it.
      log.error({ err: error, subject }, 'could not publish a chat event');
    }
  };

  const publishMessage = (type: MessageEventType, message: ChatMessage) =>
    publish(roomSubject(message.roomId), toMessageEvent(type, message));

  const publishActivity = (
    roomId: number,
    user: { userId: number; username: string },
    type: ActivityType,
    data?: object,
  ) => {
    const activity: RoomActivity = {
      roomId,
      activityType: type,
      userId: user.userId,
      username: user.username,
      data: data ? Buffer.from(JSON.stringify(data), 'utf8') : Buffer.alloc(0),
      timestamp: new Date(),
    };
    return publish(activitySubject(roomId), toActivityEvent(activity));
  };

  const spend = async (limit: RateRule, key: string, what: string) => {
    const decision = await deps.rateLimiter.consume(limit, key);
    if (decision.allowed) return;
    const seconds = Math.max(1, Math.ceil(decision.retryAfterMs / 1000));
    throw new RateLimitedError(`${what}; try again in ${seconds} s`, decision.retryAfterMs);
  };

  const spendMessage = async (user: ChatUser, roomId: number) => {
    const key = `${user.userId}:${roomId}`;
    await spend(burst, key, `too many messages in room ${roomId}`);
    await spend(sustained, key, `too many messages in room ${roomId}`);
  };

  /** The replay of a send that was already stored: the same answer as the first time. */
  const replay = (row: MessageRow): ChatMessage => {
    if (row.flagged) throw notSent(row.moderation_reasons);
    return toChatMessage(row);
  };

  const usernameOf = async (userId: number): Promise<string> =>
    (await usernamesOf(deps.sql, [userId])).get(userId) ?? '';

  const chat = {
    store,
    publishActivity,
    publishMessage,

    async createRoom(
      user: ChatUser,
      input: { name: string; description: string; isPrivate: boolean },
    ): Promise<Room> {
      const row = await store.createRoom({ ...input, ownerId: user.userId });
      log.info({ roomId: row.id, ownerId: user.userId }, 'room created');
      return toRoom(row);
    },

    /**
     * Joins a room (idempotent) and announces it. A stream's chat is open to every signed-in
     * user while its stream exists; a private room only to its owner and moderators.
     */
    async join(user: ChatUser, roomId: number): Promise<{ room: Room; lastMessageId: number }> {
      const room = await loadRoom(roomId);
      if (!visible(room, user)) {
        if (room.stream_id !== null) throw new NotFoundError(`room ${roomId} not found`);
        throw new PermissionDeniedError(`room ${roomId} is private`);
      }
      const sanctions = await store.sanctionsOf(roomId, user.userId);
      if (sanctions.ban) throw new PermissionDeniedError(`you are banned from room ${roomId}`);
      await store.join(roomId, user.userId);
      await publishActivity(roomId, user, 'join');
      return { room: toRoom(room), lastMessageId: room.last_message_id };
    },

    async leave(user: ChatUser, roomId: number): Promise<void> {
      await loadRoom(roomId);
      if (await store.leave(roomId, user.userId)) await publishActivity(roomId, user, 'leave');
    },

    /** The room a reader may read, or the error saying why not. */
    async readable(reader: ChatReader, roomId: number): Promise<RoomRow> {
      const room = await loadRoom(roomId);
      if (reader === null || isModerator(reader)) return room;
      if (!visible(room, reader)) throw new NotFoundError(`room ${roomId} not found`);
      const sanctions = await store.sanctionsOf(roomId, reader.userId);
      if (sanctions.ban) throw new PermissionDeniedError(`you are banned from room ${roomId}`);
      if (!(await store.isMember(roomId, reader.userId))) {
        throw new FailedPreconditionError(`you have not joined room ${roomId}; join it first`);
      }
      return room;
    },

    async send(user: ChatUser, input: SendMessageInput): Promise<ChatMessage> {
      const clientId = input.clientMessageId || null;
      if (clientId) {
        const stored = await store.byClientId(input.roomId, user.userId, clientId);
        if (stored) return replay(stored);
      }
      const room = await loadRoom(input.roomId);
      const sanctions = await store.sanctionsOf(room.id, user.userId);
      if (sanctions.ban) throw new PermissionDeniedError(`you are banned from room ${room.id}`);
      if (!(await store.isMember(room.id, user.userId))) {
        if (!visible(room, user)) throw new NotFoundError(`room ${room.id} not found`);
        throw new FailedPreconditionError(`you have not joined room ${room.id}; join it before sending`);
      }
      if (sanctions.mute) {
        throw new PermissionDeniedError(
          `you are muted in room ${room.id} until ${sanctions.mute.expiresAt?.toISOString() ?? 'further notice'}`,
        );
      }
      if (room.stream_status === 'ended') {
        throw new FailedPreconditionError(`stream ${room.stream_id} has ended; its chat is closed`);
      }
      if (input.replyToId > 0 && !(await store.visibleInRoom(room.id, input.replyToId))) {
        throw new InvalidArgumentError(
          `reply_to_id ${input.replyToId} is not a message of room ${room.id}`,
          'reply_to_id',
        );
      }
      await spendMessage(user, room.id);
      const recent = await store.recentContents(room.id, user.userId, REPEAT_WINDOW_S, REPEAT_SAMPLE);
      const verdict: Verdict = await deps.moderation.check(input.content, { recent });

      const stored = await rooms.run(room.id, async () => {
        const row = await store.insertMessage({
          roomId: room.id,
          userId: user.userId,
          content: input.content,
          messageType: input.messageType,
          metadata: input.metadata,
          replyToId: input.replyToId > 0 ? input.replyToId : null,
          clientMessageId: clientId,
          flagged: verdict.flagged,
          score: verdict.score,
          reasons: verdict.reasons,
        });
        if (row && !row.flagged) await publishMessage('created', toChatMessage(row));
        return row;
      });
      if (!stored) {
        // A concurrent retry with the same client_message_id stored it first.
        const first = clientId ? await store.byClientId(room.id, user.userId, clientId) : null;
        if (!first) throw new Error('message vanished after a client_message_id conflict');
        return replay(first);
      }
      if (stored.flagged) {
        sent.inc({ outcome: 'flagged' });
        try {
          await deps.moderation.flagged({
            messageId: stored.id,
            roomId: room.id,
            userId: user.userId,
            username: stored.username,
            content: stored.content,
            verdict,
          });
        } catch (error) {
          // The message is stored flagged either way; the queue is rebuilt from it.
          log.error({ err: error, messageId: stored.id }, 'could not queue a flagged message');
        }
        throw notSent(verdict.reasons);
      }
      sent.inc({ outcome: 'delivered' });
      return toChatMessage(stored);
    },

    async history(
      reader: ChatReader,
      input: { roomId: number; limit: number; beforeMessageId: number; afterMessageId: number },
    ) {
      const room = await chat.readable(reader, input.roomId);
      const page = await store.history(room.id, {
        limit: input.limit,
        beforeId: input.beforeMessageId,
        afterId: input.afterMessageId,
      });
      const messages = page.messages.map(toChatMessage);
      const last = messages.at(-1)?.messageId ?? input.afterMessageId;
      return { messages, hasMore: page.hasMore, lastMessageId: last };
    },

    async edit(user: ChatUser, input: { messageId: number; content: string }): Promise<ChatMessage> {
      const row = await store.getMessage(input.messageId);
      if (!row || row.flagged) throw new NotFoundError(`message ${input.messageId} not found`);
      if (row.user_id !== user.userId) throw new PermissionDeniedError('only the author may edit a message');
      if (row.deleted_at) throw new FailedPreconditionError(`message ${input.messageId} was deleted`);
      const sanctions = await store.sanctionsOf(row.room_id, user.userId);
      if (sanctions.ban) throw new PermissionDeniedError(`you are banned from room ${row.room_id}`);
      if (sanctions.mute) throw new PermissionDeniedError(`you are muted in room ${row.room_id}`);
      await spendMessage(user, row.room_id);
      const verdict = await deps.moderation.check(input.content);
      // An edit the moderation refuses changes nothing: the message stays as it was.
      if (verdict.flagged) {
        throw new FailedPreconditionError(
          `message not changed: ${verdict.reasons.join(', ') || 'it breaks the chat rules'}`,
        );
      }
      const updated = await rooms.run(row.room_id, async () => {
        const edited = await store.editMessage(row.id, input.content);
        if (edited) await publishMessage('edited', toChatMessage(edited));
        return edited;
      });
      if (!updated) throw new FailedPreconditionError(`message ${input.messageId} was deleted`);
      return toChatMessage(updated);
    },

    /** The author deletes their own message; a moderator anyone's (audited). */
    async remove(user: ChatUser, input: { messageId: number; reason: string }): Promise<void> {
      const row = await store.getMessage(input.messageId);
      if (!row || (row.flagged && !isModerator(user)))
        throw new NotFoundError(`message ${input.messageId} not found`);
      const own = row.user_id === user.userId;
      if (!own && !isModerator(user)) {
        throw new PermissionDeniedError("deleting someone else's message needs the moderator or admin role");
      }
      if (row.deleted_at) return;
      const deleted = await rooms.run(row.room_id, async () => {
        const done = await store.deleteMessage(row.id, user.userId);
        if (done && !done.flagged) await publishMessage('deleted', toChatMessage(done));
        return done;
      });
      if (deleted && !own) {
        await deps.moderation.auditMessageDeletion(
          { userId: user.userId, roles: user.roles },
          { messageId: row.id, roomId: row.room_id, userId: row.user_id },
          input.reason,
        );
      }
    },

    /** Typing and presence: members only, rate limited, delivered to listeners and never stored. */
    async activity(user: ChatUser, roomId: number, type: ActivityType): Promise<void> {
      const room = await chat.readable(user, roomId);
      await spend(activityRule, `${user.userId}:${room.id}`, `too many activity updates in room ${room.id}`);
      await publishActivity(room.id, user, type);
    },

    /** Delivers a message a moderator approved after the automatic moderation flagged it. */
    async deliverApproved(messageId: number): Promise<void> {
      const row = await store.getMessage(messageId);
      if (!row || row.flagged || row.deleted_at) return;
      await rooms.run(row.room_id, () => publishMessage('created', toChatMessage(row)));
    },

    async announceSanction(roomId: number, userId: number, type: ActivityType, data: object): Promise<void> {
      await publishActivity(roomId, { userId, username: await usernameOf(userId) }, type, data);
    },

    /**
     * A room's message events from `fromId` on: the stored messages after it first (none
     * when it is 0), then the live events. It subscribes before reading, holds back live
     * events until the stored ones are out, and drops those already sent, so there is no gap
     * and no duplicate at the seam. `room` waits while the reader's buffer is full.
     */
    async feed(
      roomId: number,
      fromId: number,
      deliver: (message: Message) => void,
      room: () => Promise<void> = async () => {},
    ): Promise<Subscription> {
      const held: Message[] = [];
      let live = false;
      const subscription = deps.bus.subscribe(roomSubject(roomId), (payload) => {
        const message = parseMessageEvent(payload);
        if (!message || message.chatMessage?.roomId !== roomId) {
          log.warn({ roomId }, 'dropped a malformed chat event');
          return;
        }
        if (live) deliver(message);
        else held.push(message);
      });
      try {
        await subscription.ready;
        let last = fromId;
        if (fromId > 0) {
          for (;;) {
            const page = await store.history(roomId, {
              limit: CHAT_HISTORY_MAX_LIMIT,
              beforeId: 0,
              afterId: last,
            });
            for (const row of page.messages) {
              deliver({ eventType: 'created', chatMessage: toChatMessage(row) });
              last = row.id;
            }
            if (!page.hasMore) break;
            await room();
          }
        }
        for (const message of held.splice(0)) {
          if (message.eventType === 'created' && (message.chatMessage?.messageId ?? 0) <= last) continue;
          deliver(message);
        }
        live = true;
        return subscription;
      } catch (error) {
        subscription.unsubscribe();
        throw error;
      }
    },
  };
  return chat;
}
