/**
 * ChatClient: chat rooms, notifications and moderation on an existing SignalingConnection
 * (docs/signaling.md, "Chat").
 *
 *   const chat = new ChatClient({ connection, token: () => auth.accessToken() });
 *   chat.on('message', (message, { roomId, eventType, index }) => panel.show(message, index));
 *   const room = await chat.join({ streamId });
 *   await chat.send(room.roomId, 'hello');
 *
 * Guarantees, per room:
 * - Each message is emitted once as `created` (later `edited` / `deleted` for the same id): the
 *   sender's ack and the room broadcast carry the same message, and history overlaps live
 *   messages at the seams; everything is deduplicated by messageId.
 * - Messages are kept ordered by messageId, the room's order. While (re)joining, live events
 *   are held back until the history is in, so they are emitted in order too.
 * - After a reconnect every joined room is joined again and caught up from the newest message
 *   seen (`afterMessageId`, paging forwards): no gap, no duplicate.
 * - A send carries a client message id; when the connection drops before the ack, the send is
 *   retried with the same id once the room is back, and the edge returns the message stored the
 *   first time instead of storing it twice.
 * - When the edge stopped sending a room to this connection because it was not reading fast
 *   enough (`chat.gap`), the missed range is read with `chat.history` forwards, live events held
 *   back meanwhile: still no gap, no duplicate, and edits or deletions in the range are applied.
 */

import { UnavailableError } from '../../common/contracts/browser.js';
import type {
  ActivityType,
  ChatGap,
  ChatMessage,
  ChatRoom,
  MessageEventType,
  MethodParams,
  MethodResults,
  ModerationItem,
  Notifications,
  RoomActivity,
  TrackProgress,
  UserNotification,
} from '../protocol/index.js';
import { type SignalingConnection, SignalingError, type TokenProvider } from './connection.js';
import { Emitter } from './emitter.js';

export interface ChatClientOptions {
  connection: SignalingConnection;
  /**
   * A fresh access token for when the edge says the connection's own has expired (a long
   * session outlives a 15-minute token): handed over with `auth.refresh`, then the call is retried.
   */
  token?: TokenProvider;
  /** Messages loaded on join and per `loadOlder` (default 50, at most 100). */
  historyLimit?: number;
  /** Tries of a send whose connection dropped before the ack (default 5). */
  sendAttempts?: number;
  /** How long another user shows as typing without a new typing event (default 6 s). */
  typingTimeoutMs?: number;
  /**
   * The most messages kept per room (default: all). Past it the oldest are let go as new ones
   * arrive (`hasOlder` turns true, `loadOlder` reads them again), so a long session in a busy
   * room keeps bounded memory. Duplicates are still recognised well beyond the window.
   */
  maxMessages?: number;
}

export interface MessageInfo {
  roomId: number;
  eventType: MessageEventType;
  /** The message's position in `room(roomId).messages` (ordered by messageId). */
  index: number;
}

export type ChatClientEvents = {
  /** A message became known (`created`), or a known one changed (`edited`, `deleted`). */
  message: [ChatMessage, MessageInfo];
  activity: [RoomActivity];
  /** Who is typing in a room now (other users only). */
  typing: [{ roomId: number; usernames: string[] }];
  /** A room was (re)joined and caught up (`reconnect: false` also after a gap was filled). */
  synced: [{ roomId: number; reconnect: boolean }];
  /** The edge skipped a range of a room for this slow connection; it is being read (then `synced`). */
  gap: [ChatGap];
  /** The edge took this connection out of a room (the user was banned); it is not re-joined. */
  removed: [{ roomId: number; reason: string }];
  /** A new notification of the signed-in user (after `loadNotifications`). */
  notification: [UserNotification];
  /** Live processing progress of one of the user's uploads (after `loadNotifications`). */
  trackProgress: [TrackProgress];
  /** The result of each `loadNotifications`, including the one after a reconnect. */
  notifications: [MethodResults['notifications.list']];
  /** A background failure (a re-join after a reconnect that was refused, ...). */
  error: [Error];
};

export interface SendOptions {
  messageType?: 'text' | 'emote' | 'reaction';
  metadata?: Record<string, unknown>;
  replyToId?: number;
  /** Chosen by the library when absent; pass your own to retry a send across page loads. */
  clientMessageId?: string;
}

/** A joined room as this client knows it. */
export interface RoomView {
  readonly roomId: number;
  readonly room: ChatRoom;
  /** Ordered by messageId. */
  readonly messages: readonly ChatMessage[];
  /** Older messages exist before the first one loaded. */
  readonly hasOlder: boolean;
  readonly readOnly: boolean;
}

type MessageEvent = Notifications['chat.message'];

interface RoomState {
  roomId: number;
  room: ChatRoom;
  messages: ChatMessage[];
  ids: Set<number>;
  newest: number;
  hasOlder: boolean;
  readOnly: boolean;
  left: boolean;
  syncing: boolean;
  held: MessageEvent[];
  /** Resolves when the room is joined and caught up on the current connection. */
  ready: Promise<void>;
  markReady: () => void;
  typers: Map<number, { username: string; timer: ReturnType<typeof setTimeout> }>;
  typingSentAt: number;
  /** Counts catch-up runs: a newer one (after another reconnect) supersedes an older one. */
  catchUps: number;
  /** Where an unfinished gap starts: a catch-up after a reconnect reads from there at the latest. */
  gapAfter: number | null;
  /** Live messages up to this id were seen and forgotten (maxMessages): a late copy is a duplicate. */
  forgottenThrough: number;
}

const TYPING_RESEND_MS = 3000;

/** Browser-safe (no Node crypto) and available outside secure contexts, unlike randomUUID. */
function newClientMessageId(): string {
  const bytes = new Uint8Array(12);
  globalThis.crypto.getRandomValues(bytes);
  return `c-${Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('')}`;
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => {};
  const promise = new Promise<void>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

/** Insertion index keeping `messages` ordered by id (new messages are nearly always last). */
function insertionIndex(messages: readonly ChatMessage[], messageId: number): number {
  let index = messages.length;
  while (index > 0 && (messages[index - 1]?.messageId ?? 0) > messageId) index--;
  return index;
}

export class ChatClient extends Emitter<ChatClientEvents> {
  readonly #connection: SignalingConnection;
  readonly #options: ChatClientOptions;
  readonly #rooms = new Map<number, RoomState>();
  /** Live events of rooms whose join is in flight (joined by stream id, so the room id is not known yet). */
  #orphans: MessageEvent[] = [];
  #joining = 0;
  #userId = 0;
  #notificationsWanted = false;
  readonly #offs: Array<() => void> = [];

  constructor(options: ChatClientOptions) {
    super();
    this.#options = options;
    this.#connection = options.connection;
    this.#offs.push(
      this.#connection.on('chat.message', (event) => this.#onMessage(event)),
      this.#connection.on('chat.activity', (activity) => this.#onActivity(activity)),
      this.#connection.on('chat.gap', (gap) => this.#onGap(gap)),
      this.#connection.on('notifications.new', (notification) => this.emit('notification', notification)),
      this.#connection.on('track.progress', (progress) => this.emit('trackProgress', progress)),
      this.#connection.on('open', ({ reconnect }) => {
        if (reconnect) this.#resume();
      }),
      this.#connection.on('close', (info) => {
        for (const room of this.#rooms.values()) {
          if (room.left) continue;
          // Until the re-join is done, sends wait instead of failing on a room the new socket is not in;
          // when no reconnect follows, they go ahead and fail at once.
          if (info.willReconnect) this.#unready(room);
          else room.markReady();
        }
      }),
    );
  }

  /** The signed-in user's id as the edge knows it (0 before the first join, or anonymous). */
  get userId(): number {
    return this.#userId;
  }

  room(roomId: number): RoomView | undefined {
    return this.#rooms.get(roomId);
  }

  /** Joins a room (or a stream's room) and loads its latest messages, emitted as `message`. */
  async join(target: { roomId: number } | { streamId: number }): Promise<RoomView> {
    const known = 'roomId' in target ? this.#rooms.get(target.roomId) : undefined;
    if (known && !known.left) {
      await known.ready;
      return known;
    }
    this.#joining++;
    try {
      const result = await this.#request('chat.join', {
        ...target,
        limit: this.#options.historyLimit ?? 50,
      });
      this.#userId = result.userId;
      const already = this.#rooms.get(result.room.roomId);
      if (already && !already.left) {
        // Joined twice (by room and by stream): one room, its messages merged by id.
        for (const message of result.messages)
          this.#apply(already, { roomId: already.roomId, eventType: 'created', message });
        await already.ready;
        return already;
      }
      const { promise, resolve } = deferred();
      const state: RoomState = {
        roomId: result.room.roomId,
        room: result.room,
        messages: [],
        ids: new Set(),
        newest: 0,
        hasOlder: result.hasMore,
        readOnly: result.readOnly,
        left: false,
        syncing: true,
        held: [],
        ready: promise,
        markReady: resolve,
        typers: new Map(),
        typingSentAt: 0,
        catchUps: 0,
        gapAfter: null,
        forgottenThrough: 0,
      };
      this.#rooms.set(state.roomId, state);
      this.#adoptOrphans(state);
      for (const message of result.messages)
        this.#apply(state, { roomId: state.roomId, eventType: 'created', message });
      this.#finishSync(state, false);
      return state;
    } finally {
      this.#joining--;
      if (this.#joining === 0) this.#orphans = [];
    }
  }

  async leave(roomId: number): Promise<void> {
    const state = this.#rooms.get(roomId);
    if (state) this.#forget(state);
    await this.#request('chat.leave', { roomId });
  }

  /**
   * Sends a message; resolves with the stored message (also emitted as `message`). Rejects with a
   * SignalingError naming the reason when it is refused: `failed_precondition` "message not sent:
   * offensive language" for the moderation, `resource_exhausted` (with retryAfterMs) for a flood, ...
   */
  async send(roomId: number, content: string, options: SendOptions = {}): Promise<ChatMessage> {
    const params: MethodParams['chat.send'] = {
      roomId,
      content,
      clientMessageId: options.clientMessageId ?? newClientMessageId(),
      ...(options.messageType ? { messageType: options.messageType } : {}),
      ...(options.metadata ? { metadata: options.metadata } : {}),
      ...(options.replyToId ? { replyToId: options.replyToId } : {}),
    };
    const attempts = this.#options.sendAttempts ?? 5;
    for (let attempt = 1; ; attempt++) {
      const state = this.#rooms.get(roomId);
      if (!state || state.left) throw new UnavailableError(`room ${roomId} is not joined`);
      await state.ready;
      try {
        const { message } = await this.#request('chat.send', params);
        const current = this.#rooms.get(roomId);
        if (current) this.#apply(current, { roomId, eventType: 'created', message });
        this.#setTyping(state, false, false);
        return message;
      } catch (error) {
        // Lost with the connection (or timed out): the same client message id makes the retry safe.
        const retriable =
          error instanceof UnavailableError || (error as { code?: string }).code === 'unavailable';
        if (!retriable || attempt >= attempts || this.#connection.state === 'closed') throw error;
      }
    }
  }

  async edit(messageId: number, content: string): Promise<ChatMessage> {
    const { message } = await this.#request('chat.edit', { messageId, content });
    const state = this.#rooms.get(message.roomId);
    if (state) this.#apply(state, { roomId: message.roomId, eventType: 'edited', message });
    return message;
  }

  /** Deletes a message: one's own, or anyone's with the moderator role (`reason` is audited). */
  async delete(messageId: number, reason?: string): Promise<void> {
    await this.#request('chat.delete', { messageId, ...(reason ? { reason } : {}) });
  }

  /** Loads older messages of a joined room (emitted as `message` with their index); false when none are left. */
  async loadOlder(roomId: number): Promise<boolean> {
    const state = this.#rooms.get(roomId);
    if (!state?.hasOlder) return false;
    const oldest = state.messages[0]?.messageId ?? 0;
    const page = await this.#request('chat.history', {
      roomId,
      ...(oldest > 0 ? { beforeMessageId: oldest } : {}),
      limit: this.#options.historyLimit ?? 50,
    });
    state.hasOlder = page.hasMore;
    for (const message of [...page.messages].reverse())
      this.#apply(state, { roomId, eventType: 'created', message }, true);
    return state.hasOlder;
  }

  /**
   * Tells the room this user is typing (`true`, sent at most every 3 s) or stopped (`false`).
   * Sending a message stops it too. Best effort: failures are not reported.
   */
  typing(roomId: number, active = true): void {
    const state = this.#rooms.get(roomId);
    if (state && !state.readOnly) this.#setTyping(state, active, true);
  }

  async report(
    target: { targetType: 'message' | 'user' | 'stream'; targetId: number },
    reason: string,
    details?: string,
  ): Promise<number> {
    const { reportId } = await this.#request('chat.report', {
      ...target,
      reason,
      ...(details ? { details } : {}),
    });
    return reportId;
  }

  async createRoom(
    name: string,
    options: { description?: string; isPrivate?: boolean } = {},
  ): Promise<ChatRoom> {
    return (await this.#request('chat.createRoom', { name, ...options })).room;
  }

  /**
   * The user's notifications (newest first) and unread count; from then on new ones arrive as
   * `notification` events, and after a reconnect the first page is loaded again (`notifications`).
   */
  async loadNotifications(
    options: MethodParams['notifications.list'] = {},
  ): Promise<MethodResults['notifications.list']> {
    this.#notificationsWanted = true;
    const result = await this.#request('notifications.list', options);
    this.emit('notifications', result);
    return result;
  }

  async markRead(target: { notificationIds: number[] } | { all: true }): Promise<number> {
    return (await this.#request('notifications.markRead', target)).updated;
  }

  /** Moderator actions; the control plane checks the role and audits each one. */
  readonly moderation = {
    queue: (params: MethodParams['moderation.queue'] = {}): Promise<MethodResults['moderation.queue']> =>
      this.#request('moderation.queue', params),
    resolve: async (
      reportId: number,
      resolution: 'dismissed' | 'actioned' | 'approved',
      note?: string,
    ): Promise<ModerationItem | null> =>
      (await this.#request('moderation.resolve', { reportId, resolution, ...(note ? { note } : {}) })).item,
    mute: async (
      roomId: number,
      userId: number,
      durationS: number,
      reason?: string,
    ): Promise<string | null> =>
      (await this.#request('moderation.mute', { roomId, userId, durationS, ...(reason ? { reason } : {}) }))
        .expiresAt,
    unmute: async (roomId: number, userId: number): Promise<void> => {
      await this.#request('moderation.unmute', { roomId, userId });
    },
    ban: async (roomId: number, userId: number, durationS = 0, reason?: string): Promise<string | null> =>
      (await this.#request('moderation.ban', { roomId, userId, durationS, ...(reason ? { reason } : {}) }))
        .expiresAt,
    unban: async (roomId: number, userId: number): Promise<void> => {
      await this.#request('moderation.unban', { roomId, userId });
    },
    endStream: async (streamId: number, reason?: string): Promise<string> =>
      (await this.#request('moderation.endStream', { streamId, ...(reason ? { reason } : {}) }))
        .previousStatus,
    deleteMessage: (messageId: number, reason?: string): Promise<void> => this.delete(messageId, reason),
  };

  /** Stops following the connection's events (the connection itself stays open). */
  close(): void {
    for (const off of this.#offs.splice(0)) off();
    for (const state of this.#rooms.values()) this.#forget(state);
    this.#rooms.clear();
    this.removeAllListeners();
  }

  /** A request; an expired connection token is replaced once (auth.refresh) and the request retried. */
  async #request<M extends keyof MethodParams & `${'chat' | 'notifications' | 'moderation'}.${string}`>(
    method: M,
    params: MethodParams[M],
  ): Promise<MethodResults[M]> {
    try {
      return await this.#connection.request(method, params);
    } catch (error) {
      const provider = this.#options.token;
      if (!(error instanceof SignalingError) || error.code !== 'unauthenticated' || !provider) throw error;
      const token = typeof provider === 'string' ? provider : await provider();
      await this.#connection.request('auth.refresh', { token });
      return this.#connection.request(method, params);
    }
  }

  #onMessage(event: MessageEvent): void {
    const state = this.#rooms.get(event.roomId);
    if (!state) {
      if (this.#joining > 0) this.#orphans.push(event);
      return;
    }
    if (state.left) return;
    if (state.syncing) state.held.push(event);
    else this.#apply(state, event);
  }

  #adoptOrphans(state: RoomState): void {
    const mine = this.#orphans.filter((event) => event.roomId === state.roomId);
    if (mine.length === 0) return;
    this.#orphans = this.#orphans.filter((event) => event.roomId !== state.roomId);
    state.held.unshift(...mine);
  }

  /** `older`: read on purpose before the oldest kept message (loadOlder), not a late live copy. */
  #apply(state: RoomState, event: MessageEvent, older = false): void {
    const { message, eventType } = event;
    if (eventType === 'created') {
      const id = message.messageId;
      // A page read before the oldest kept message is new to the window, even if seen before it.
      const known = older
        ? id >= (state.messages[0]?.messageId ?? Number.POSITIVE_INFINITY) && state.ids.has(id)
        : state.ids.has(id) || id <= state.forgottenThrough;
      if (known) return;
      let index = insertionIndex(state.messages, id);
      state.messages.splice(index, 0, message);
      state.ids.add(id);
      if (id > state.newest) state.newest = id;
      if (index === state.messages.length - 1) index -= this.#forgetOldest(state);
      this.#stoppedTyping(state, message.userId);
      this.emit('message', message, { roomId: state.roomId, eventType, index });
      return;
    }
    if (!state.ids.has(message.messageId) && message.messageId > state.forgottenThrough) return;
    const index = state.messages.findIndex((known) => known.messageId === message.messageId);
    if (index < 0) return;
    state.messages[index] = message;
    this.emit('message', message, { roomId: state.roomId, eventType, index });
  }

  /**
   * Keeps a room within maxMessages as new messages arrive; returns how many were let go. Their
   * ids are remembered a while longer (four windows), then only as "through this id".
   */
  #forgetOldest(state: RoomState): number {
    const max = this.#options.maxMessages;
    if (max === undefined || state.messages.length <= max) return 0;
    const dropped = state.messages.length - max;
    // One at a time (each new message), shift() trims the array in place where splice() copies
    // what it removes into a new array: three times the cost per message in a busy room.
    if (dropped === 1) state.messages.shift();
    else state.messages.splice(0, dropped);
    state.hasOlder = true;
    const keepIds = 4 * max + 100;
    // In chunks of a window, not one by one: the sort is then paid once per `max` messages.
    if (state.ids.size > keepIds + max) {
      const ids = [...state.ids].sort((a, b) => a - b);
      for (const id of ids.slice(0, ids.length - keepIds)) {
        state.ids.delete(id);
        if (id > state.forgottenThrough) state.forgottenThrough = id;
      }
    }
    return dropped;
  }

  /** Held live events go out after the history: in id order, each once. */
  #finishSync(state: RoomState, reconnect: boolean): void {
    const held = state.held.splice(0);
    state.syncing = false;
    for (const event of held) this.#apply(state, event);
    state.markReady();
    this.emit('synced', { roomId: state.roomId, reconnect });
  }

  #unready(state: RoomState): void {
    if (state.syncing) return;
    state.syncing = true;
    const { promise, resolve } = deferred();
    state.ready = promise;
    state.markReady = resolve;
  }

  #resume(): void {
    for (const state of this.#rooms.values()) {
      if (!state.left) void this.#catchUp(state);
    }
    if (this.#notificationsWanted) {
      this.loadNotifications().catch((error: unknown) => this.emit('error', error as Error));
    }
  }

  /**
   * Re-joins on the new socket and pages forwards from the newest message seen. A control plane
   * that is briefly unavailable is retried; a closed socket waits for the next open, which runs
   * this again (the older run then stops).
   */
  async #catchUp(state: RoomState): Promise<void> {
    const run = ++state.catchUps;
    this.#unready(state);
    const current = () => !state.left && state.catchUps === run;
    for (let attempt = 0; ; attempt++) {
      try {
        const limit = 100;
        const cursor = state.gapAfter === null ? state.newest : Math.min(state.newest, state.gapAfter);
        // An anonymous reader names its stream (its connection has no stream of its own).
        const target =
          state.readOnly && state.room.streamId
            ? { streamId: state.room.streamId }
            : { roomId: state.roomId };
        const joined = await this.#request('chat.join', {
          ...target,
          limit,
          ...(cursor > 0 ? { afterMessageId: cursor } : {}),
        });
        if (!current()) return;
        state.room = joined.room;
        let page: { messages: ChatMessage[]; hasMore: boolean; lastMessageId: number } = joined;
        for (;;) {
          for (const message of page.messages) this.#applyStored(state, message);
          // Without a cursor the join returned the latest page; older ones stay for loadOlder.
          if (!page.hasMore || cursor === 0 || page.messages.length === 0) break;
          page = await this.#request('chat.history', {
            roomId: state.roomId,
            afterMessageId: page.lastMessageId,
            limit,
          });
          if (!current()) return;
        }
        state.gapAfter = null;
        this.#finishSync(state, true);
        return;
      } catch (error) {
        if (!current()) return;
        const code = (error as { code?: string }).code;
        if (code === 'unavailable') {
          if (this.#connection.state !== 'open') return;
          await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 250 * 2 ** attempt)));
          if (!current() || this.#connection.state !== 'open') return;
          continue;
        }
        // Refused (banned meanwhile, the room is gone, ...): final for this room.
        this.#forget(state);
        this.emit('removed', { roomId: state.roomId, reason: (error as Error).message });
        this.emit('error', error as Error);
        return;
      }
    }
  }

  #onGap(gap: ChatGap): void {
    const state = this.#rooms.get(gap.roomId);
    if (!state || state.left) return;
    state.gapAfter = Math.min(state.gapAfter ?? gap.afterMessageId, gap.afterMessageId);
    this.emit('gap', gap);
    void this.#fillGap(state, gap);
  }

  /**
   * Reads a gap's messages forwards, live events held back meanwhile. A dropped connection leaves
   * it to the catch-up after the reconnect (which starts at the gap at the latest).
   */
  async #fillGap(state: RoomState, gap: ChatGap): Promise<void> {
    // A catch-up still paging is superseded: what it had not read yet is after the newest id seen.
    const catchingUp = state.syncing;
    const run = ++state.catchUps;
    this.#unready(state);
    const current = () => !state.left && state.catchUps === run;
    const behind = catchingUp && state.newest > 0 ? state.newest : gap.afterMessageId;
    let after = Math.min(state.gapAfter ?? gap.afterMessageId, behind);
    for (let attempt = 0; ; ) {
      try {
        const page = await this.#request('chat.history', {
          roomId: state.roomId,
          afterMessageId: after,
          limit: 100,
        });
        if (!current()) return;
        for (const message of page.messages) this.#applyStored(state, message);
        after = page.lastMessageId;
        if (page.hasMore && page.messages.length > 0) continue;
        state.gapAfter = null;
        this.#finishSync(state, false);
        return;
      } catch (error) {
        if (!current()) return;
        if ((error as { code?: string }).code !== 'unavailable') {
          this.#forget(state);
          this.emit('removed', { roomId: state.roomId, reason: (error as Error).message });
          this.emit('error', error as Error);
          return;
        }
        if (this.#connection.state !== 'open') return;
        await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 250 * 2 ** attempt++)));
        if (!current() || this.#connection.state !== 'open') return;
      }
    }
  }

  /** A message as stored now: new, or a known one that was edited or deleted meanwhile. */
  #applyStored(state: RoomState, message: ChatMessage): void {
    if (!state.ids.has(message.messageId)) {
      this.#apply(state, { roomId: state.roomId, eventType: 'created', message });
      return;
    }
    const known = state.messages.find((m) => m.messageId === message.messageId);
    if (!known || (known.deleted === message.deleted && known.updatedAt === message.updatedAt)) return;
    const eventType = message.deleted && !known.deleted ? 'deleted' : 'edited';
    this.#apply(state, { roomId: state.roomId, eventType, message });
  }

  #forget(state: RoomState): void {
    state.left = true;
    state.held = [];
    for (const { timer } of state.typers.values()) clearTimeout(timer);
    state.typers.clear();
    // Waiting sends give up rather than hang.
    state.markReady();
    this.#rooms.delete(state.roomId);
  }

  #onActivity(activity: RoomActivity): void {
    const state = this.#rooms.get(activity.roomId);
    if (!state || state.left) return;
    this.emit('activity', activity);
    const type: ActivityType = activity.activityType;
    if (type === 'banned' && activity.userId === this.#userId && this.#userId !== 0) {
      this.#forget(state);
      const reason =
        typeof activity.data?.reason === 'string' && activity.data.reason ? activity.data.reason : 'banned';
      this.emit('removed', { roomId: state.roomId, reason: `you are banned from this room (${reason})` });
      return;
    }
    if (activity.userId === this.#userId) return;
    if (type === 'typing') {
      const previous = state.typers.get(activity.userId);
      if (previous) clearTimeout(previous.timer);
      const timer = setTimeout(
        () => this.#stoppedTyping(state, activity.userId),
        this.#options.typingTimeoutMs ?? 6000,
      );
      state.typers.set(activity.userId, { username: activity.username, timer });
      this.#emitTyping(state);
    } else if (type === 'stopped_typing' || type === 'leave' || type === 'banned' || type === 'muted') {
      this.#stoppedTyping(state, activity.userId);
    }
  }

  #stoppedTyping(state: RoomState, userId: number): void {
    const entry = state.typers.get(userId);
    if (!entry) return;
    clearTimeout(entry.timer);
    state.typers.delete(userId);
    this.#emitTyping(state);
  }

  #emitTyping(state: RoomState): void {
    this.emit('typing', {
      roomId: state.roomId,
      usernames: [...state.typers.values()].map((entry) => entry.username),
    });
  }

  #setTyping(state: RoomState, active: boolean, announceStop: boolean): void {
    const now = Date.now();
    if (active) {
      if (now - state.typingSentAt < TYPING_RESEND_MS) return;
      state.typingSentAt = now;
    } else {
      if (state.typingSentAt === 0) return;
      state.typingSentAt = 0;
      // A sent message already tells the others the user stopped typing.
      if (!announceStop) return;
    }
    this.#connection.request('chat.typing', { roomId: state.roomId, typing: active }).catch(() => undefined);
  }
}
