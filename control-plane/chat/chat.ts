/**
 * The chat itself, independent of any transport: rooms, membership, sending (the seed's
 * "Envoi de Message"), history, edits and deletions, ephemeral activity, and a room feed
 * with catch-up for streaming readers.
 *
 * Sending, in order: validate -> (retry? the first answer) -> room, ban, membership, mute, from
 * memory (room-states.ts) -> rate limit -> moderation score -> the room's group commit
 * (batcher.ts: membership, sanctions and reply_to_id checked again in the insert, stored, then
 * published with the other messages of its batch) -> return. Whether a stream's room is closed
 * comes from memory only (the room's stream status, then `stream.ended`), as before a message
 * racing the stream's end by less than the bus latency may still go through. None of it but the commit touches
 * PostgreSQL once the room and the sender are loaded, and the moderation score is taken before
 * the message joins its room's queue, so a slow scorer delays that message only.
 * A message the moderation refuses is stored flagged, queued for the moderators and never
 * published; the sender gets FAILED_PRECONDITION "message not sent: <reasons>".
 *
 * Who may read a room (history, feeds, activity): its members, moderators, and service
 * callers (the edge, with its API key and no user token).
 */
import { performance } from 'node:perf_hooks';
import {
  type ActivityType,
  activitySubject,
  CHAT_HISTORY_MAX_LIMIT,
  FailedPreconditionError,
  InvalidArgumentError,
  type MessageEventType,
  NotFoundError,
  PermissionDeniedError,
  parseRoomEvents,
  RateLimitedError,
  roomSubject,
  toActivityEvent,
  toMessage,
  toMessageBatch,
  toMessageEvent,
} from '../../common/contracts/index.js';
import { counter, histogram, type Logger, STEP_BUCKETS_S, type UserRole } from '../../common/index.js';
import type { EventBus, RateLimiter, RateRule, Subscription } from '../../common/ports/index.js';
import type { ChatMessage, Message, Room, RoomActivity } from '../../proto/gen/veza/chat/chat.js';
import { isModerator, type Moderation } from '../moderation/index.js';
import { GroupCommit, type Stored } from './batcher.js';
import { KeyedQueue } from './keyed-queue.js';
import {
  ACTIVITY_LIMIT,
  CHAT_BURST,
  CHAT_SUSTAINED,
  GROUP_COMMIT_MAX,
  SANCTION_RECHECK_MS,
} from './limits.js';
import {
  type Answer,
  isBanned,
  muteOf,
  type RoomEntry,
  type RoomStates,
  recentContents,
  type Sender,
  setAnswer,
} from './room-states.js';
import { type ChatStore, type NewMessage, type RoomRow, toChatMessage, toRoom } from './store.js';
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

export interface ChatDeps {
  store: ChatStore;
  states: RoomStates;
  bus: EventBus;
  rateLimiter: RateLimiter;
  moderation: Moderation;
  log: Logger;
  limits?: Partial<ChatRateLimits> | undefined;
}

const sent = counter('veza_chat_messages_total', 'Chat messages, by outcome', ['outcome']);
const sendStage = histogram(
  'veza_chat_send_stage_seconds',
  "Time a chat send spends in each step on the control plane: state (memory, or its first load), rate_limit, moderation, commit_queue (waiting for its batch to start), commit_wait (commit_queue and its batch's commit and publish), send (the whole send); commit and publish are per batch",
  ['stage'],
  STEP_BUCKETS_S,
);
const batchSize = histogram(
  'veza_chat_batch_messages',
  'Messages stored by one group commit of a room',
  [],
  [1, 2, 5, 10, 20, 50, 100, 200, 500],
);

/** Rule names carry their limits: two control planes in one process with other limits keep apart counters. */
const rule = (name: string, limit: Omit<RateRule, 'name'>): RateRule => ({
  name: `${name}-${limit.points}-${limit.durationS}`,
  ...limit,
});

/** The moderation refused the message (stored flagged): a retry gets the same answer. */
class NotSentError extends FailedPreconditionError {
  constructor(readonly reasons: readonly string[]) {
    super(`message not sent: ${reasons.join(', ') || 'it breaks the chat rules'}`);
  }
}

const bannedFrom = (roomId: number) => new PermissionDeniedError(`you are banned from room ${roomId}`);
const mutedIn = (roomId: number, until: Date | null) =>
  new PermissionDeniedError(
    `you are muted in room ${roomId} until ${until?.toISOString() ?? 'further notice'}`,
  );
const streamEnded = (streamId: number | null) =>
  new FailedPreconditionError(`stream ${streamId} has ended; its chat is closed`);

interface Submission extends NewMessage {
  username: string;
  /** performance.now() when it joined the room's queue. */
  queuedAt: number;
}

/** What the room's group commit made of one message. */
type Committed =
  | { kind: 'stored'; message: ChatMessage; flagged: boolean }
  | { kind: 'conflict' | 'banned' | 'not_member' | 'bad_reply' | 'no_room' }
  | { kind: 'muted'; until: Date };

const seconds = (since: number) => (performance.now() - since) / 1000;

export function createChat(deps: ChatDeps) {
  const { store, states } = deps;
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

  /**
   * The shared RateLimiter (Redis in cluster mode), not this process's memory: a user whose
   * sends reach several control planes must not get each one's full budget. It is one Redis
   * call per rule (sub-millisecond, no PostgreSQL), outside the room's commit.
   */
  const spendMessage = async (user: ChatUser, roomId: number) => {
    const key = `${user.userId}:${roomId}`;
    await spend(burst, key, `too many messages in room ${roomId}`);
    await spend(sustained, key, `too many messages in room ${roomId}`);
  };

  /** The answer a retry gets: the message stored the first time, or the same refusal. */
  const replay = (answer: Answer): Promise<ChatMessage> => {
    if (answer.kind === 'pending') return answer.promise;
    if (answer.kind === 'flagged') return Promise.reject(new NotSentError(answer.reasons));
    return Promise.resolve(answer.message);
  };

  /** The stored message of a (room, user, client id) another send stored first (another process). */
  const storedFirst = async (
    roomId: number,
    userId: number,
    clientId: string | null,
  ): Promise<ChatMessage> => {
    const first = clientId ? await store.byClientId(roomId, userId, clientId) : null;
    if (!first) throw new Error('message vanished after a client_message_id conflict');
    if (first.flagged) throw new NotSentError(first.moderation_reasons);
    return toChatMessage(first);
  };

  /**
   * Stores a batch; its delivered messages are then published as one bus message, in id order,
   * when the room's previous batch is out (batcher.ts).
   */
  const commitBatch =
    (roomId: number) =>
    async (items: readonly Submission[]): Promise<Stored<Committed>> => {
      batchSize.observe(items.length);
      const started = performance.now();
      for (const item of items)
        sendStage.observe({ stage: 'commit_queue' }, (started - item.queuedAt) / 1000);
      const result = await store.insertBatch(roomId, items);
      sendStage.observe({ stage: 'commit' }, seconds(started));
      if (result.kind !== 'stored') return { results: items.map(() => result), publish: async () => {} };
      const delivered: ChatMessage[] = [];
      const results = result.rows.map((row, index): Committed => {
        const item = items[index];
        if (!item) throw new Error('batch insert returned more rows than it was given');
        if (row.kind !== 'stored') return row;
        const message: ChatMessage = {
          messageId: row.id,
          roomId,
          userId: item.userId,
          username: item.username,
          content: item.content,
          messageType: item.messageType,
          metadata: item.metadata,
          replyToId: item.replyToId ?? 0,
          clientMessageId: item.clientMessageId ?? '',
          deleted: false,
          createdAt: row.createdAt,
          updatedAt: row.updatedAt,
        };
        if (!item.flagged) delivered.push(message);
        return { kind: 'stored', message, flagged: item.flagged };
      });
      delivered.sort((a, b) => a.messageId - b.messageId);
      const publishBatch = async () => {
        if (delivered.length === 0) return;
        const publishing = performance.now();
        await publish(roomSubject(roomId), toMessageBatch(delivered));
        sendStage.observe({ stage: 'publish' }, seconds(publishing));
      };
      return { results, publish: publishBatch };
    };

  const commitsOf = (entry: RoomEntry): GroupCommit<Submission, Committed> => {
    const existing = entry.commits;
    if (existing instanceof GroupCommit) return existing as GroupCommit<Submission, Committed>;
    const commits = new GroupCommit<Submission, Committed>(commitBatch(entry.roomId), GROUP_COMMIT_MAX);
    entry.commits = commits;
    return commits;
  };

  /** What memory says against this send; "not a member" is checked with PostgreSQL before it is said. */
  const mayPost = async (entry: RoomEntry, sender: Sender, user: ChatUser) => {
    const { room } = entry;
    const sanctioned = isBanned(sender) || muteOf(sender) !== null;
    if (sanctioned && Date.now() - sender.checkedAt > SANCTION_RECHECK_MS) await states.reload(entry, sender);
    if (isBanned(sender)) throw bannedFrom(room.id);
    if (!sender.member) await states.reload(entry, sender);
    if (isBanned(sender)) throw bannedFrom(room.id);
    if (!sender.member) {
      if (!visible(room, user)) throw new NotFoundError(`room ${room.id} not found`);
      throw new FailedPreconditionError(`you have not joined room ${room.id}; join it before sending`);
    }
    const mute = muteOf(sender);
    if (mute) throw mutedIn(room.id, mute.expiresAt);
    if (room.stream_status === 'ended') throw streamEnded(room.stream_id);
  };

  const sendNew = async (
    entry: RoomEntry,
    sender: Sender,
    user: ChatUser,
    input: SendMessageInput,
    clientId: string | null,
  ): Promise<ChatMessage> => {
    const roomId = entry.roomId;
    await mayPost(entry, sender, user);
    let started = performance.now();
    await spendMessage(user, roomId);
    sendStage.observe({ stage: 'rate_limit' }, seconds(started));
    started = performance.now();
    const verdict = await deps.moderation.check(input.content, { recent: recentContents(sender) });
    sendStage.observe({ stage: 'moderation' }, seconds(started));
    started = performance.now();
    const committed = await commitsOf(entry).submit({
      roomId,
      userId: user.userId,
      username: user.username,
      content: input.content,
      messageType: input.messageType,
      metadata: input.metadata,
      replyToId: input.replyToId > 0 ? input.replyToId : null,
      clientMessageId: clientId,
      flagged: verdict.flagged,
      score: verdict.score,
      reasons: verdict.reasons,
      queuedAt: started,
    });
    sendStage.observe({ stage: 'commit_wait' }, seconds(started));
    switch (committed.kind) {
      case 'stored':
        break;
      case 'conflict':
        // Stored first by a retry through another control plane (or before this one's memory).
        return storedFirst(roomId, user.userId, clientId);
      case 'banned':
        sender.ban = sender.ban ?? { expiresAt: null, reason: '' };
        void states.reload(entry, sender).catch(() => undefined);
        throw bannedFrom(roomId);
      case 'not_member':
        sender.member = false;
        throw new FailedPreconditionError(`you have not joined room ${roomId}; join it before sending`);
      case 'muted':
        sender.mute = { expiresAt: committed.until, reason: '' };
        throw mutedIn(roomId, committed.until);
      case 'bad_reply':
        throw new InvalidArgumentError(
          `reply_to_id ${input.replyToId} is not a message of room ${roomId}`,
          'reply_to_id',
        );
      case 'no_room':
        throw new NotFoundError(`room ${roomId} not found`);
    }
    const { message } = committed;
    states.remember(sender, message);
    if (!committed.flagged) {
      sent.inc({ outcome: 'delivered' });
      return message;
    }
    sent.inc({ outcome: 'flagged' });
    try {
      await deps.moderation.flagged({
        messageId: message.messageId,
        roomId,
        userId: user.userId,
        username: user.username,
        content: message.content,
        verdict,
      });
    } catch (error) {
      // The message is stored flagged either way; the queue is rebuilt from it.
      log.error({ err: error, messageId: message.messageId }, 'could not queue a flagged message');
    }
    throw new NotSentError(verdict.reasons);
  };

  /** One send, from memory's view of the room and sender to the stored message (or the refusal). */
  const sendOnce = async (user: ChatUser, input: SendMessageInput, started: number): Promise<ChatMessage> => {
    const entry = await states.room(input.roomId);
    const sender = await states.sender(entry, user.userId);
    sendStage.observe({ stage: 'state' }, seconds(started));
    const clientId = input.clientMessageId || null;
    if (!clientId) return sendNew(entry, sender, user, input, null);
    const known = sender.answers.get(clientId);
    if (known) return replay(known);
    // Remembered before anything is awaited: a retry racing this send gets its answer.
    const sending = sendNew(entry, sender, user, input, clientId);
    setAnswer(sender, clientId, { kind: 'pending', promise: sending });
    sending.then(
      (message) => setAnswer(sender, clientId, { kind: 'stored', message }),
      (error: unknown) => {
        if (error instanceof NotSentError)
          setAnswer(sender, clientId, { kind: 'flagged', reasons: error.reasons });
        // Nothing was stored: a retry is a new try (a flood or a mute may be over by then).
        else if (sender.answers.get(clientId)?.kind === 'pending') sender.answers.delete(clientId);
      },
    );
    return sending;
  };

  /** The room a reader may read, with the sender state of a user reader. */
  const readableEntry = async (reader: ChatReader, roomId: number): Promise<RoomEntry> => {
    const entry = await states.room(roomId);
    const { room } = entry;
    if (reader === null || isModerator(reader)) return entry;
    if (!visible(room, reader)) throw new NotFoundError(`room ${roomId} not found`);
    const sender = await states.sender(entry, reader.userId);
    if (isBanned(sender)) throw bannedFrom(roomId);
    if (!sender.member) await states.reload(entry, sender);
    if (isBanned(sender)) throw bannedFrom(roomId);
    if (!sender.member) {
      throw new FailedPreconditionError(`you have not joined room ${roomId}; join it first`);
    }
    return entry;
  };

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
     * user while its stream exists; a private room only to its owner and moderators. The room
     * is read from PostgreSQL here (not the send path's memory) for its current last_message_id.
     */
    async join(user: ChatUser, roomId: number): Promise<{ room: Room; lastMessageId: number }> {
      const room = await loadRoom(roomId);
      if (!visible(room, user)) {
        if (room.stream_id !== null) throw new NotFoundError(`room ${roomId} not found`);
        throw new PermissionDeniedError(`room ${roomId} is private`);
      }
      const entry = await states.room(roomId);
      const sender = await states.sender(entry, user.userId);
      if (isBanned(sender)) await states.reload(entry, sender);
      if (isBanned(sender)) throw bannedFrom(roomId);
      await store.join(roomId, user.userId);
      await states.announce({ type: 'member_joined', room_id: roomId, user_id: user.userId });
      await publishActivity(roomId, user, 'join');
      return { room: toRoom(room), lastMessageId: room.last_message_id };
    },

    async leave(user: ChatUser, roomId: number): Promise<void> {
      await states.room(roomId);
      if (await store.leave(roomId, user.userId)) {
        await states.announce({ type: 'member_left', room_id: roomId, user_id: user.userId });
        await publishActivity(roomId, user, 'leave');
      }
    },

    /** The room a reader may read, or the error saying why not. */
    async readable(reader: ChatReader, roomId: number): Promise<RoomRow> {
      return (await readableEntry(reader, roomId)).room;
    },

    async send(user: ChatUser, input: SendMessageInput): Promise<ChatMessage> {
      const started = performance.now();
      try {
        return await sendOnce(user, input, started);
      } finally {
        sendStage.observe({ stage: 'send' }, seconds(started));
      }
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
      const entry = await states.room(row.room_id);
      const sender = await states.sender(entry, user.userId);
      if (isBanned(sender)) throw bannedFrom(row.room_id);
      if (muteOf(sender)) throw new PermissionDeniedError(`you are muted in room ${row.room_id}`);
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
      const { room } = await readableEntry(user, roomId);
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
      const usernames = await store.usernamesOf([userId]);
      await publishActivity(roomId, { userId, username: usernames.get(userId) ?? '' }, type, data);
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
        const messages = parseRoomEvents(payload);
        if (!messages || messages.some((message) => message.roomId !== roomId)) {
          log.warn({ roomId }, 'dropped a malformed chat event');
          return;
        }
        if (live) for (const message of messages) deliver(message);
        else held.push(...messages);
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
              deliver(toMessage('created', toChatMessage(row)));
              last = row.id;
            }
            if (!page.hasMore) break;
            await room();
          }
        }
        for (const message of held.splice(0)) {
          if (message.eventType === 'created' && message.messageId <= last) continue;
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
