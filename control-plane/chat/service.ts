/**
 * veza.chat.ChatService over gRPC. Every rpc that acts for someone needs their access token
 * (the edge forwards the user's token, with its API key); reading rpcs also serve the edge by
 * API key alone. Errors are VezaErrors mapped by the call wrapper; the streaming rpcs end
 * with RESOURCE_EXHAUSTED when the client stops reading (it resumes from its last id).
 *
 * ChatStream (bidirectional): each incoming ChatMessage is sent like SendMessage, and the
 * stream carries the messages of every room it sent to or subscribed to. An incoming
 * ChatMessage with message_type "subscribe" only subscribes to room_id, catching up from
 * message_id when it is set. A send that fails does not end the stream: the client gets a
 * ChatMessage with message_type "error", its room_id and client_message_id, the error text
 * as content ("message not sent: offensive language") and metadata {"code": "...", "field": ...}.
 * Edits and deletions arrive as the same message_id again (deleted = true for a deletion).
 */
import type { ServerDuplexStream, ServerWritableStream } from '@grpc/grpc-js';
import {
  activitySubject,
  chatMessageOf,
  PermissionDeniedError,
  parseActivityEvent,
  RateLimitedError,
  toVezaError,
} from '../../common/contracts/index.js';
import type { EventBus, Subscription } from '../../common/ports/index.js';
import {
  type ChatMessage,
  ChatServiceService,
  type Message,
  type RoomActivity,
} from '../../proto/gen/veza/chat/chat.js';
import { bindService, type CallContext, type ServiceBinding } from '../grpc/index.js';
import { type ChatDeps, type ChatReader, type ChatUser, createChat } from './chat.js';
import { STREAM_BUFFER_LIMIT } from './limits.js';
import {
  banSchema,
  createRoomSchema,
  deleteMessageSchema,
  editMessageSchema,
  endStreamSchema,
  getMessagesSchema,
  muteSchema,
  parseInput,
  queueSchema,
  reportSchema,
  resolveSchema,
  roomActivitySchema,
  roomIdSchema,
  sanctionTargetSchema,
  sendMessageSchema,
  streamMessagesSchema,
} from './validation.js';

export type ChatServiceDeps = ChatDeps;

function userOf(ctx: CallContext): ChatUser {
  if (!ctx.user) throw new PermissionDeniedError('this call needs a signed-in user');
  return { userId: ctx.user.userId, username: ctx.user.username, roles: ctx.user.roles };
}

/** A user token wins over the API key it came with: only a call without one reads as the service. */
function readerOf(ctx: CallContext): ChatReader {
  if (ctx.user) return userOf(ctx);
  if (ctx.service) return null;
  throw new PermissionDeniedError('this call needs a signed-in user or a service API key');
}

/** Resolves when the call ends; rejects when `fail` is called (slow consumer, ban). */
function untilEnded(ctx: CallContext): { ended: Promise<void>; fail(error: Error): void } {
  let fail: (error: Error) => void = () => {};
  const ended = new Promise<void>((resolve, reject) => {
    fail = reject;
    if (ctx.signal.aborted) resolve();
    ctx.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  // A failure before anyone awaits `ended` (during a catch-up) must not count as unhandled.
  ended.catch(() => undefined);
  return { ended, fail: (error) => fail(error) };
}

const slowConsumer = () =>
  new RateLimitedError(
    'stream dropped: the client is not reading fast enough; resume from your last message id',
    1000,
  );

type Writable<T> = ServerWritableStream<unknown, T> | ServerDuplexStream<unknown, T>;

/** Writes unless the client has fallen too far behind; then fails the call instead of buffering for ever. */
function guardedWriter<T>(stream: Writable<T>, fail: (error: Error) => void): (message: T) => void {
  let dropped = false;
  return (message) => {
    if (dropped || stream.writableEnded) return;
    stream.write(message);
    if (stream.writableLength > STREAM_BUFFER_LIMIT) {
      dropped = true;
      fail(slowConsumer());
    }
  };
}

/** Waits for the client to drain its backlog before the next page of a catch-up. */
function roomIn<T>(stream: Writable<T>, ctx: CallContext): () => Promise<void> {
  return async () => {
    if (stream.writableLength < STREAM_BUFFER_LIMIT / 2 || ctx.signal.aborted) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        stream.off('drain', done);
        ctx.signal.removeEventListener('abort', done);
        resolve();
      };
      stream.on('drain', done);
      ctx.signal.addEventListener('abort', done, { once: true });
    });
  };
}

/** Ends a user's feed of a room when they are banned from it. */
function watchBan(
  bus: EventBus,
  roomId: number,
  user: ChatUser | null,
  fail: (error: Error) => void,
): Subscription | null {
  if (!user) return null;
  return bus.subscribe(activitySubject(roomId), (payload) => {
    const activity = parseActivityEvent(payload);
    if (activity?.activityType === 'banned' && activity.userId === user.userId) {
      fail(new PermissionDeniedError(`you are banned from room ${roomId}`));
    }
  });
}

function errorMessage(error: unknown, incoming: ChatMessage): ChatMessage {
  const veza = toVezaError(error);
  const detail: Record<string, string | number> = { code: veza.code };
  if (veza.details.field) detail.field = veza.details.field;
  if (veza.details.retryAfterMs !== undefined) detail.retry_after_ms = veza.details.retryAfterMs;
  return {
    messageId: 0,
    roomId: incoming.roomId,
    userId: 0,
    content: veza.code === 'internal' ? 'internal server error' : veza.message,
    messageType: 'error',
    metadata: Buffer.from(JSON.stringify(detail), 'utf8'),
    replyToId: 0,
    createdAt: new Date(),
    updatedAt: undefined,
    clientMessageId: incoming.clientMessageId,
    username: '',
    deleted: false,
  };
}

/** Remembers the ids a ChatStream already carried, so an ack and its bus event go out once. */
class RecentIds {
  private readonly ids = new Set<number>();
  private readonly order: number[] = [];
  constructor(private readonly capacity = 4096) {}
  add(id: number): boolean {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    this.order.push(id);
    if (this.order.length > this.capacity) this.ids.delete(this.order.shift() ?? 0);
    return true;
  }
}

export function createChatService(deps: ChatServiceDeps): ServiceBinding {
  const chat = createChat(deps);
  const { moderation } = deps;
  const actor = (ctx: CallContext) => {
    const user = userOf(ctx);
    return { userId: user.userId, roles: user.roles };
  };

  return bindService(ChatServiceService, {
    sendMessage: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const user = userOf(ctx);
        const input = parseInput(sendMessageSchema, request);
        const message = await chat.send(user, input);
        return { success: true, message, errorMessage: '' };
      },
    },

    getMessages: {
      policy: 'jwt-or-api-key',
      handler: async (request, ctx) => {
        const input = parseInput(getMessagesSchema, request);
        return chat.history(readerOf(ctx), input);
      },
    },

    createRoom: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const input = parseInput(createRoomSchema, request);
        return { success: true, room: await chat.createRoom(userOf(ctx), input) };
      },
    },

    joinRoom: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const { roomId } = parseInput(roomIdSchema, request);
        const joined = await chat.join(userOf(ctx), roomId);
        return { success: true, room: joined.room, lastMessageId: joined.lastMessageId };
      },
    },

    leaveRoom: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const { roomId } = parseInput(roomIdSchema, request);
        await chat.leave(userOf(ctx), roomId);
        return { success: true };
      },
    },

    streamMessages: {
      policy: 'jwt-or-api-key',
      handler: async (request, stream, ctx) => {
        const input = parseInput(streamMessagesSchema, request);
        const reader = readerOf(ctx);
        await chat.readable(reader, input.roomId);
        const { ended, fail } = untilEnded(ctx);
        const write = guardedWriter<Message>(stream, fail);
        const ban = watchBan(deps.bus, input.roomId, reader, fail);
        let feed: Subscription | undefined;
        try {
          await ban?.ready;
          feed = await chat.feed(input.roomId, input.lastMessageId, write, roomIn(stream, ctx));
          await ended;
        } finally {
          feed?.unsubscribe();
          ban?.unsubscribe();
        }
      },
    },

    streamRoomActivity: {
      policy: 'jwt-or-api-key',
      handler: async (request, stream, ctx) => {
        const { roomId } = parseInput(roomIdSchema, request);
        const reader = readerOf(ctx);
        await chat.readable(reader, roomId);
        const { ended, fail } = untilEnded(ctx);
        const write = guardedWriter<RoomActivity>(stream, fail);
        const subscription = deps.bus.subscribe(activitySubject(roomId), (payload) => {
          const activity = parseActivityEvent(payload);
          if (!activity || activity.roomId !== roomId) {
            ctx.log.warn('dropped a malformed activity event');
            return;
          }
          write(activity);
          if (reader && activity.activityType === 'banned' && activity.userId === reader.userId) {
            fail(new PermissionDeniedError(`you are banned from room ${roomId}`));
          }
        });
        try {
          await subscription.ready;
          await ended;
        } finally {
          subscription.unsubscribe();
        }
      },
    },

    chatStream: {
      policy: 'jwt',
      handler: async (requests, stream, ctx) => {
        const user = userOf(ctx);
        const { ended, fail } = untilEnded(ctx);
        const write = guardedWriter<ChatMessage>(stream, fail);
        const seen = new RecentIds();
        const feeds = new Map<number, Promise<Subscription>>();
        const forward = (message: Message) => {
          if (message.eventType === 'created' && !seen.add(message.messageId)) return;
          write(chatMessageOf(message));
        };
        const follow = (roomId: number, fromId: number) => {
          let feed = feeds.get(roomId);
          if (!feed) {
            feed = chat
              .readable(user, roomId)
              .then(() => chat.feed(roomId, fromId, forward, roomIn(stream, ctx)));
            feeds.set(roomId, feed);
            // A failed subscription is forgotten so the client may try again (after joining).
            feed.catch(() => feeds.delete(roomId));
          }
          return feed;
        };
        const handle = async (incoming: ChatMessage) => {
          try {
            if (incoming.messageType === 'subscribe') {
              const { roomId, lastMessageId } = parseInput(streamMessagesSchema, {
                roomId: incoming.roomId,
                lastMessageId: incoming.messageId,
              });
              await follow(roomId, lastMessageId);
              return;
            }
            const input = parseInput(sendMessageSchema, incoming);
            // Subscribing first lets the sender see its own message in order with the others.
            await follow(input.roomId, 0).catch(() => undefined);
            const message = await chat.send(user, input);
            if (seen.add(message.messageId)) write(message);
          } catch (error) {
            write(errorMessage(error, incoming));
          }
        };

        // One incoming message at a time, in order; the client half-closing ends the call.
        const reading = (async () => {
          for await (const incoming of requests) await handle(incoming);
        })();
        reading.catch(() => undefined);
        try {
          await Promise.race([ended, reading]);
        } finally {
          for (const feed of feeds.values())
            feed.then(
              (sub) => sub.unsubscribe(),
              () => undefined,
            );
        }
      },
    },

    editMessage: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const input = parseInput(editMessageSchema, request);
        return { success: true, message: await chat.edit(userOf(ctx), input) };
      },
    },

    deleteMessage: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const input = parseInput(deleteMessageSchema, request);
        await chat.remove(userOf(ctx), input);
        return { success: true };
      },
    },

    sendRoomActivity: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const input = parseInput(roomActivitySchema, request);
        await chat.activity(userOf(ctx), input.roomId, input.activityType);
        return { success: true };
      },
    },

    reportContent: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const input = parseInput(reportSchema, request);
        const report = await moderation.report(actor(ctx), input);
        return { success: true, reportId: report.reportId };
      },
    },

    muteUser: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const input = parseInput(muteSchema, request);
        const expiresAt = await moderation.mute(actor(ctx), input);
        await chat.announceSanction(input.roomId, input.userId, 'muted', {
          until: expiresAt.toISOString(),
          reason: input.reason,
        });
        return { success: true, expiresAt };
      },
    },

    unmuteUser: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const input = parseInput(sanctionTargetSchema, request);
        if (await moderation.unmute(actor(ctx), input)) {
          await chat.announceSanction(input.roomId, input.userId, 'unmuted', {});
        }
        return { success: true };
      },
    },

    banUser: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const input = parseInput(banSchema, request);
        const expiresAt = await moderation.ban(actor(ctx), input);
        await chat.announceSanction(input.roomId, input.userId, 'banned', {
          until: expiresAt?.toISOString() ?? null,
          reason: input.reason,
        });
        return { success: true, expiresAt: expiresAt ?? undefined };
      },
    },

    unbanUser: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const input = parseInput(sanctionTargetSchema, request);
        await moderation.unban(actor(ctx), input);
        return { success: true };
      },
    },

    endStream: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const input = parseInput(endStreamSchema, request);
        const previousStatus = await moderation.endStream(actor(ctx), input);
        return { success: true, previousStatus };
      },
    },

    listModerationQueue: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const input = parseInput(queueSchema, request);
        return moderation.queue(actor(ctx), {
          status: input.status,
          limit: input.limit,
          beforeId: input.beforeReportId,
        });
      },
    },

    resolveReport: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const input = parseInput(resolveSchema, request);
        const result = await moderation.resolve(actor(ctx), input);
        if (result.approvedMessageId !== null) await chat.deliverApproved(result.approvedMessageId);
        return { success: true, item: result.item };
      },
    },
  });
}
