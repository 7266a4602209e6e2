import { performance } from 'node:perf_hooks';
import {
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  UnauthenticatedError,
} from '../../../common/contracts/index.js';
import type { Logger } from '../../../common/index.js';
import type { CallContext, ControlPlaneClient } from '../../../control-plane/client/index.js';
import type { ChatMessage as ProtoChatMessage } from '../../../proto/gen/veza/chat/chat.js';
import type {
  ChatRoom,
  MessagePage,
  MethodParams,
  MethodResults,
  ServerFrame,
} from '../../protocol/index.js';
import { SignalingConditionError } from '../errors.js';
import type { ConnectionAuth } from '../upgrade.js';
import {
  asProtocolError,
  toWireMessage,
  toWireModerationItem,
  toWireNotification,
  toWireRoom,
} from './convert.js';
import type { ChatHub, ChatMember } from './hub.js';
import { chatSendSteps } from './metrics.js';
import type { ChatRequests, ChatSessionMethod } from './types.js';

/** What a chat session needs of its socket (a uWS WebSocket while it is open). */
export interface ChatSocket {
  readonly open: boolean;
  send(text: string): void;
  subscribe(topic: string): void;
  unsubscribe(topic: string): void;
  /** Closes the connection when `incomingBytes` more would pass its backpressure limit; true if it did. */
  dropIfSlow(incomingBytes: number): boolean;
  /** Bytes uWS holds for the socket, not yet written to the network. */
  bufferedAmount(): number;
}

export interface ChatSessionOptions {
  auth: ConnectionAuth;
  socket: ChatSocket;
  hub: ChatHub;
  controlPlane: ControlPlaneClient;
  log: Logger;
}

interface JoinedRoom {
  readOnly: boolean;
}

type Handlers = { [M in ChatSessionMethod]: (params: MethodParams[M]) => Promise<MethodResults[M]> };

const notJoinedRoom = (method: string, roomId: number) =>
  new SignalingConditionError(
    'failed_precondition',
    'not_joined',
    `${method} needs room ${roomId}: call chat.join on this connection first`,
  );

const signInToChat = () => new PermissionDeniedError('sign in to chat: a listener token can only read');

function page(response: {
  messages: ProtoChatMessage[];
  hasMore: boolean;
  lastMessageId: number;
}): MessagePage {
  return {
    messages: response.messages.map(toWireMessage),
    hasMore: response.hasMore,
    lastMessageId: response.lastMessageId,
  };
}

export class ChatSession implements ChatRequests {
  readonly #auth: ConnectionAuth;
  readonly #socket: ChatSocket;
  readonly #hub: ChatHub;
  readonly #cp: ControlPlaneClient;
  readonly #log: Logger;
  readonly #rooms = new Map<number, JoinedRoom>();
  readonly #member: ChatMember;
  #watchingNotifications = false;
  #closed = false;

  constructor(options: ChatSessionOptions) {
    this.#auth = options.auth;
    this.#socket = options.socket;
    this.#hub = options.hub;
    this.#cp = options.controlPlane;
    this.#log = options.log;
    const socket = options.socket;
    const alive = () => !this.#closed && socket.open;
    this.#member = {
      userId: options.auth.userId,
      get open() {
        return alive();
      },
      subscribe: (topic) => {
        if (alive()) socket.subscribe(topic);
      },
      unsubscribe: (topic) => {
        if (socket.open) socket.unsubscribe(topic);
      },
      send: (frame: ServerFrame) => {
        if (alive()) socket.send(JSON.stringify(frame));
      },
      dropIfSlow: (incomingBytes) => alive() && socket.dropIfSlow(incomingBytes),
      bufferedAmount: () => (alive() ? socket.bufferedAmount() : 0),
      removedFrom: (roomId) => {
        this.#rooms.delete(roomId);
      },
    };
  }

  handle<M extends ChatSessionMethod>(method: M, params: MethodParams[M]): Promise<MethodResults[M]> {
    const handler = this.#handlers[method] as (params: MethodParams[M]) => Promise<MethodResults[M]>;
    return handler(params);
  }

  async closed(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const rooms = [...this.#rooms.keys()];
    this.#rooms.clear();
    for (const roomId of rooms) this.#hub.leave(this.#member, roomId);
    if (this.#watchingNotifications) this.#hub.unwatchUser(this.#member);
    // Presence only (membership stays): the others see this user go unless another of their sockets stays here.
    const context = this.#freshContext();
    if (!context) return;
    await Promise.all(
      rooms
        .filter((roomId) => !this.#hub.hasUser(roomId, this.#auth.userId))
        .map((roomId) =>
          this.#cp.chat
            .sendRoomActivity({ roomId, activityType: 'leave' }, context)
            .catch((error: unknown) => {
              this.#log.debug({ err: error, roomId }, 'could not announce leaving the room');
            }),
        ),
    );
  }

  /** The user's call context, or null when there is no usable user token (anonymous, expired). */
  #freshContext(): CallContext | null {
    const { token, expiresAt } = this.#auth;
    return this.#auth.kind === 'user' && token && expiresAt > Date.now() ? { token } : null;
  }

  /** The user's call context; a clear error when the connection cannot act for a user. */
  #userContext(): CallContext {
    if (this.#auth.kind !== 'user' || !this.#auth.token) throw signInToChat();
    const context = this.#freshContext();
    if (!context) {
      throw new UnauthenticatedError(
        'the access token of this connection has expired: send a fresh one with auth.refresh, or reconnect',
      );
    }
    return context;
  }

  #requireRoom(method: string, roomId: number, write: boolean): JoinedRoom {
    const room = this.#rooms.get(roomId);
    if (!room) throw notJoinedRoom(method, roomId);
    if (write && room.readOnly) throw signInToChat();
    return room;
  }

  /** Control-plane calls, with their errors naming the protocol's fields. */
  async #call<T>(call: () => Promise<T>, rename?: Record<string, string>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw asProtocolError(error, rename);
    }
  }

  /**
   * For a listener: the room of its stream, the only one it may read. A listener token names
   * the stream; a connection without a token names it in `streamId`.
   */
  async #listenerRoom(params: { roomId?: number; streamId?: number }): Promise<ChatRoom> {
    const streamId = this.#auth.streamId ?? params.streamId ?? null;
    if (streamId === null) {
      throw new InvalidArgumentError(
        'an anonymous connection reads the chat of one stream: pass streamId; sign in to chat',
      );
    }
    if (params.streamId !== undefined && params.streamId !== streamId) {
      throw new PermissionDeniedError(
        'a listener token can only read the chat of its own stream; sign in to chat',
      );
    }
    const response = await this.#call(() => this.#cp.stream.getStreamInfo({ streamId }, {}));
    const info = response.stream;
    if (!info?.chatRoomId) throw new NotFoundError(`stream ${streamId} has no chat room`);
    if (params.roomId !== undefined && params.roomId !== info.chatRoomId) {
      throw new PermissionDeniedError(
        'a listener token can only read the chat of its own stream; sign in to chat',
      );
    }
    if (!info.isPublic || !info.allowAnonymous) throw signInToChat();
    return {
      roomId: info.chatRoomId,
      name: info.title,
      description: '',
      ownerId: info.ownerId,
      streamId,
      isPrivate: false,
      createdAt: null,
    };
  }

  readonly #handlers: Handlers = {
    'chat.join': async (params) => {
      const listener = this.#auth.kind === 'listener';
      let room: ChatRoom;
      let context: CallContext;
      if (listener) {
        room = await this.#listenerRoom(params);
        // Read with the edge's service identity: the control plane lets services read any room.
        context = {};
      } else {
        context = this.#userContext();
        let roomId = params.roomId;
        if (roomId === undefined) {
          const streamId = params.streamId ?? 0;
          const info = await this.#call(() => this.#cp.stream.getStreamInfo({ streamId }, context));
          roomId = info.stream?.chatRoomId || undefined;
          if (!roomId) throw new NotFoundError(`stream ${streamId} has no chat room`);
        }
        const id = roomId;
        const joined = await this.#call(() => this.#cp.chat.joinRoom({ roomId: id }, context), {
          room_id: 'roomId',
        });
        if (!joined.room) throw new Error('JoinRoom returned no room');
        room = toWireRoom(joined.room);
      }
      const { roomId } = room;
      // Subscribed (bus and topic) before reading: whatever is stored after the read is delivered live.
      await this.#hub.enter(this.#member, roomId);
      this.#rooms.set(roomId, { readOnly: listener });
      try {
        const history = page(
          await this.#call(() =>
            this.#cp.chat.getMessages(
              {
                roomId,
                limit: params.limit ?? 0,
                beforeMessageId: 0,
                afterMessageId: params.afterMessageId ?? 0,
              },
              context,
            ),
          ),
        );
        this.#hub.noteRead(roomId, history.messages.at(-1)?.messageId ?? 0);
        return { ...history, room, userId: this.#auth.userId, readOnly: listener };
      } catch (error) {
        this.#rooms.delete(roomId);
        this.#hub.leave(this.#member, roomId);
        throw error;
      }
    },

    'chat.leave': async ({ roomId }) => {
      const joined = this.#rooms.get(roomId);
      this.#rooms.delete(roomId);
      this.#hub.leave(this.#member, roomId);
      if (joined?.readOnly) return {};
      const context = this.#userContext();
      await this.#call(() => this.#cp.chat.leaveRoom({ roomId }, context));
      return {};
    },

    'chat.createRoom': async ({ name, description, isPrivate }) => {
      const context = this.#userContext();
      const response = await this.#call(() =>
        this.#cp.chat.createRoom(
          { name, description: description ?? '', isPrivate: isPrivate ?? false },
          context,
        ),
      );
      if (!response.room) throw new Error('CreateRoom returned no room');
      return { room: toWireRoom(response.room) };
    },

    'chat.send': async (params) => {
      this.#requireRoom('chat.send', params.roomId, true);
      const context = this.#userContext();
      const calling = performance.now();
      const response = await this.#call(() =>
        this.#cp.chat.sendMessage(
          {
            roomId: params.roomId,
            content: params.content,
            messageType: params.messageType ?? '',
            metadata: params.metadata
              ? Buffer.from(JSON.stringify(params.metadata), 'utf8')
              : Buffer.alloc(0),
            replyToId: params.replyToId ?? 0,
            clientMessageId: params.clientMessageId,
          },
          context,
        ),
      );
      const answered = performance.now();
      chatSendSteps.observe({ step: 'control_plane' }, (answered - calling) / 1000);
      if (!response.message) throw new Error('SendMessage returned no message');
      // The broadcast first, then the ack: the sender sees its message in order with the others'.
      await this.#hub.delivered(params.roomId, response.message.messageId);
      chatSendSteps.observe({ step: 'broadcast' }, (performance.now() - answered) / 1000);
      return { message: toWireMessage(response.message) };
    },

    'chat.edit': async ({ messageId, content }) => {
      const context = this.#userContext();
      const response = await this.#call(() => this.#cp.chat.editMessage({ messageId, content }, context));
      if (!response.message) throw new Error('EditMessage returned no message');
      return { message: toWireMessage(response.message) };
    },

    'chat.delete': async ({ messageId, reason }) => {
      const context = this.#userContext();
      await this.#call(() => this.#cp.chat.deleteMessage({ messageId, reason: reason ?? '' }, context));
      return {};
    },

    'chat.history': async ({ roomId, beforeMessageId, afterMessageId, limit }) => {
      const room = this.#rooms.get(roomId);
      // Anonymous listeners read with the service identity, so only the room they joined.
      if (this.#auth.kind === 'listener' && !room) throw notJoinedRoom('chat.history', roomId);
      const context = room?.readOnly ? {} : this.#userContext();
      const request = {
        roomId,
        limit: limit ?? 0,
        beforeMessageId: beforeMessageId ?? 0,
        afterMessageId: afterMessageId ?? 0,
      };
      const live = async () => page(await this.#cp.chat.getMessages(request, context));
      if (!room) return this.#call(live);
      // A joined room's reader gets the last page served at this position while the control plane is down.
      const key = `${roomId}:${request.beforeMessageId}:${request.afterMessageId}:${request.limit}`;
      const fallen = await this.#call(() => this.#hub.history.read(key, live));
      return fallen.value;
    },

    'chat.typing': async ({ roomId, typing }) => {
      this.#requireRoom('chat.typing', roomId, true);
      const context = this.#userContext();
      const activityType = typing === false ? 'stopped_typing' : 'typing';
      await this.#call(() => this.#cp.chat.sendRoomActivity({ roomId, activityType }, context));
      return {};
    },

    'chat.report': async ({ targetType, targetId, reason, details }) => {
      const context = this.#userContext();
      const response = await this.#call(() =>
        this.#cp.chat.reportContent({ targetType, targetId, reason, details: details ?? '' }, context),
      );
      return { reportId: response.reportId };
    },

    'notifications.list': async ({ page: pageNumber, pageSize, unreadOnly }) => {
      const context = this.#userContext();
      if (!this.#watchingNotifications) {
        // Live pushes start before the read: a notification created meanwhile is in one or the other.
        await this.#hub.watchUser(this.#member);
        this.#watchingNotifications = true;
      }
      const response = await this.#call(() =>
        this.#cp.notification.getNotifications(
          {
            pagination: { page: pageNumber ?? 1, pageSize: pageSize ?? 0, total: 0, totalPages: 0 },
            unreadOnly: unreadOnly ?? false,
          },
          context,
        ),
      );
      return {
        notifications: response.notifications.map(toWireNotification),
        unreadCount: response.unreadCount,
        page: response.pagination?.page ?? pageNumber ?? 1,
        pageSize: response.pagination?.pageSize ?? pageSize ?? 0,
        total: response.pagination?.total ?? response.notifications.length,
      };
    },

    'notifications.markRead': async ({ notificationIds, all }) => {
      const context = this.#userContext();
      const response = await this.#call(
        () =>
          this.#cp.notification.markAsRead(
            { notificationIds: notificationIds ?? [], all: all ?? false },
            context,
          ),
        { notification_ids: 'notificationIds' },
      );
      return { updated: response.updated };
    },

    'moderation.queue': async ({ status, limit, beforeReportId }) => {
      const context = this.#userContext();
      const response = await this.#call(() =>
        this.#cp.chat.listModerationQueue(
          { status: status ?? '', limit: limit ?? 0, beforeReportId: beforeReportId ?? 0 },
          context,
        ),
      );
      return { items: response.items.map(toWireModerationItem), hasMore: response.hasMore };
    },

    'moderation.resolve': async ({ reportId, resolution, note }) => {
      const context = this.#userContext();
      const response = await this.#call(() =>
        this.#cp.chat.resolveReport({ reportId, resolution, note: note ?? '' }, context),
      );
      return { item: response.item ? toWireModerationItem(response.item) : null };
    },

    'moderation.mute': async ({ roomId, userId, durationS, reason }) => {
      const context = this.#userContext();
      const response = await this.#call(() =>
        this.#cp.chat.muteUser({ roomId, userId, durationS, reason: reason ?? '' }, context),
      );
      return { expiresAt: response.expiresAt?.toISOString() ?? null };
    },

    'moderation.unmute': async ({ roomId, userId }) => {
      const context = this.#userContext();
      await this.#call(() => this.#cp.chat.unmuteUser({ roomId, userId }, context));
      return {};
    },

    'moderation.ban': async ({ roomId, userId, durationS, reason }) => {
      const context = this.#userContext();
      const response = await this.#call(() =>
        this.#cp.chat.banUser({ roomId, userId, durationS: durationS ?? 0, reason: reason ?? '' }, context),
      );
      return { expiresAt: response.expiresAt?.toISOString() ?? null };
    },

    'moderation.unban': async ({ roomId, userId }) => {
      const context = this.#userContext();
      await this.#call(() => this.#cp.chat.unbanUser({ roomId, userId }, context));
      return {};
    },

    'moderation.endStream': async ({ streamId, reason }) => {
      const context = this.#userContext();
      const response = await this.#call(() =>
        this.#cp.chat.endStream({ streamId, reason: reason ?? '' }, context),
      );
      return { previousStatus: response.previousStatus };
    },
  };
}
