/**
 * The edge's side of chat delivery (control-plane/chat/README.md): one EventBus subscription
 * per room and per user that a local socket needs, shared by all of them, and one uWS topic
 * per room (`room:<id>`) and per user (`user:<id>`).
 *
 * - Each bus event is published once to its topic with `app.publish` (a socket's own publish
 *   sends nothing when that socket subscribes to no topic), so every member on this node gets
 *   each event exactly once, in the order the bus delivered it.
 * - Subscriptions are reference-counted: the first socket in a room subscribes (and waits until
 *   the bus routes to it, so nothing published after its history read is missed), the last one
 *   out unsubscribes.
 * - A control plane publishes a group commit's messages as one bus message (a batch); each of its
 *   messages goes out as its own `chat.message`, in the batch's (id) order.
 * - Slow consumers of a room: before a publish the room's members are checked, and one whose
 *   socket holds more than `pauseBytes` unsent (with what this tick already published) is taken
 *   off the room's topic instead of being sent more: the edge's memory for it stays bounded. A
 *   check reads every member's buffer, so it is skipped while it cannot find anyone: the fullest
 *   buffer at the last check, plus every byte the edge has written to any socket since
 *   (`OutboundMeter`), plus this publish, still under `pauseBytes`. A busy room of healthy
 *   members is then checked once per `pauseBytes` of traffic instead of on every publish. The
 *   hub notes the ids of the events it skips for it; once the socket has drained below
 *   `resumeBytes` (checked every `pollMs`), it is put back on the topic and told the range it
 *   missed (`chat.gap` {roomId, afterMessageId, throughMessageId}), which the client reads with
 *   `chat.history` forwards from `afterMessageId`. uWS loses what a tick published to a topic for
 *   a socket that leaves the topic in the same tick, so those ids count as missed too.
 * - Notifications (the user's topic) are few: a socket that falls behind on them is disconnected
 *   before uWS would drop one (it reconnects and reloads them).
 * - `banned` activity for a user removes that user's sockets from the room.
 * - Upload progress (`tracks.<id>.progress`) is keyed by track, not by user: one wildcard
 *   subscription, held while any user is watched, routes each event to its owner's topic.
 */

import {
  ALL_TRACK_PROGRESS,
  activitySubject,
  chatMessageOf,
  notificationSubject,
  parseActivityEvent,
  parseNotificationEvent,
  parseRoomEvents,
  roomSubject,
  trackProgressEventSchema,
} from '../../../common/contracts/index.js';
import type { Logger } from '../../../common/index.js';
import type { EventBus, Subscription } from '../../../common/ports/index.js';
import { LastKnown } from '../../last-known.js';
import type { MessagePage } from '../../protocol/index.js';
import {
  MESSAGE_EVENT_TYPES,
  type MessageEventType,
  type NotificationFrame,
  type ServerFrame,
} from '../../protocol/index.js';
import { wsNotifications } from '../metrics.js';
import type { OutboundMeter } from '../socket.js';
import { toWireActivity, toWireMessage, toWireNotification } from './convert.js';
import { chatAckWaits, chatBufferedPeak, chatDeliveries, chatPaused, chatSlowConsumers } from './metrics.js';

export const roomTopic = (roomId: number): string => `room:${roomId}`;
export const userTopic = (userId: number): string => `user:${userId}`;

/** A socket as the hub sees it. */
export interface ChatMember {
  readonly userId: number;
  /** False once the socket has closed: it must not be touched any more. */
  readonly open: boolean;
  subscribe(topic: string): void;
  unsubscribe(topic: string): void;
  send(frame: ServerFrame): void;
  /** Bytes uWS holds for the socket, not yet written to the network. */
  bufferedAmount(): number;
  /**
   * Disconnects the socket when it is behind (uWS buffers for it) and `incomingBytes` more would
   * pass the backpressure limit; true if it did.
   */
  dropIfSlow(incomingBytes: number): boolean;
  /** The hub removed the socket from the room (the user was banned). */
  removedFrom(roomId: number): void;
}

export interface ChatHubOptions {
  /** Publishes to the topics, and counts every byte the edge writes to its sockets. */
  app: Pick<OutboundMeter, 'publish' | 'bytes'>;
  bus: EventBus;
  log: Logger;
  /** How long an ack may wait for its own message to pass through this node (default 1 s). */
  ackWaitMs?: number;
  /** A member with more than this unsent stops getting its room's messages (default 256 KiB). */
  pauseBytes?: number;
  /** ... until it is back under this (default 64 KiB). */
  resumeBytes?: number;
  /** How often paused members are checked for having drained (default 50 ms). */
  pollMs?: number;
}

/** What a paused member missed: the ids of the message events skipped for it. */
interface Missed {
  minId: number;
  maxId: number;
}

interface Shared {
  members: Set<ChatMember>;
  subscriptions: Subscription[];
  ready: Promise<void>;
  /** Bytes published to the topic in this tick: uWS writes them out together, after the publishes. */
  pendingBytes: number;
}

interface RoomEntry extends Shared {
  roomId: number;
  /** Members off the topic because they are behind, with what they missed. */
  paused: Map<ChatMember, Missed>;
  /** Message ids published to the topic in this tick (lost for a member paused in it). */
  tick: Missed | null;
  /**
   * The fullest subscribed member's buffer at the last check (with that tick's publishes), and
   * the edge's outbound bytes then; Infinity forces the next publish to check (a member came in).
   */
  checkedPeak: number;
  checkedAt: number;
  /** The newest "created" id this node has published or read for the room. */
  newest: number;
  recent: Set<number>;
  waiters: Map<number, Set<() => void>>;
}

/** How many recent message ids a room remembers (to answer "did this one pass already?"). */
const RECENT_IDS = 1024;
/** Half of the socket's hard backpressure limit (512 KiB): responses still fit above it. */
const DEFAULT_PAUSE_BYTES = 256 * 1024;
const DEFAULT_RESUME_BYTES = 64 * 1024;

/** The most bytes a subscribed member was seen holding at a check of its room, since the process started. */
let bufferedPeak = 0;

function spanOf(ids: readonly number[]): Missed | null {
  if (ids.length === 0) return null;
  return { minId: Math.min(...ids), maxId: Math.max(...ids) };
}

function widen(missed: Missed, span: Missed): void {
  missed.minId = Math.min(missed.minId, span.minId);
  missed.maxId = Math.max(missed.maxId, span.maxId);
}

export class ChatHub {
  /**
   * The last history page served per room and position, answered while the control plane cannot
   * answer (only to a socket that joined the room, which the control plane authorised).
   */
  readonly history = new LastKnown<string, MessagePage>({ name: 'chat-history', maxEntries: 2000 });
  readonly #options: ChatHubOptions;
  readonly #log: Logger;
  readonly #rooms = new Map<number, RoomEntry>();
  readonly #users = new Map<number, Shared>();
  #progress: Subscription | null = null;
  #poller: ReturnType<typeof setInterval> | null = null;
  #closing = false;

  constructor(options: ChatHubOptions) {
    this.#options = options;
    this.#log = options.log.child({ component: 'chat-hub' });
  }

  /** Subscribes the socket to the room's topic, once the bus routes the room's events to this node. */
  async enter(member: ChatMember, roomId: number): Promise<void> {
    if (this.#closing || !member.open) throw new Error('connection closed');
    let entry = this.#rooms.get(roomId);
    if (!entry) {
      entry = this.#createRoom(roomId);
      this.#rooms.set(roomId, entry);
    }
    entry.members.add(member);
    member.subscribe(roomTopic(roomId));
    // Its buffer was never read by this room's checks.
    entry.checkedPeak = Number.POSITIVE_INFINITY;
    try {
      await entry.ready;
    } catch (error) {
      // The failed entry is already forgotten; only this socket's topic is left to undo.
      entry.members.delete(member);
      if (member.open) member.unsubscribe(roomTopic(roomId));
      throw error;
    }
    if (!member.open) {
      this.leave(member, roomId);
      throw new Error('connection closed');
    }
  }

  leave(member: ChatMember, roomId: number): void {
    const entry = this.#rooms.get(roomId);
    if (!entry?.members.delete(member)) return;
    entry.paused.delete(member);
    if (member.open) member.unsubscribe(roomTopic(roomId));
    if (entry.members.size > 0) return;
    this.#rooms.delete(roomId);
    for (const subscription of entry.subscriptions) subscription.unsubscribe();
    for (const waiters of entry.waiters.values()) for (const wake of waiters) wake();
  }

  /** Whether another socket of `userId` on this node is in the room. */
  hasUser(roomId: number, userId: number): boolean {
    for (const member of this.#rooms.get(roomId)?.members ?? []) if (member.userId === userId) return true;
    return false;
  }

  /** A history read saw messages up to `messageId`: they need not be waited for. */
  noteRead(roomId: number, messageId: number): void {
    const entry = this.#rooms.get(roomId);
    if (entry && messageId > entry.newest) entry.newest = messageId;
  }

  /**
   * Resolves once the room's event for `messageId` went out through this node (so a sender's ack
   * follows the broadcast of its message on the same socket), or after `ackWaitMs` when the bus is
   * slow or down: the ack is not held hostage, and the client dedupes by messageId either way.
   */
  async delivered(roomId: number, messageId: number): Promise<void> {
    const entry = this.#rooms.get(roomId);
    if (!entry || entry.recent.has(messageId) || messageId <= entry.newest) return;
    const waitMs = this.#options.ackWaitMs ?? 1000;
    const passed = await new Promise<boolean>((resolve) => {
      let set = entry.waiters.get(messageId);
      if (!set) {
        set = new Set();
        entry.waiters.set(messageId, set);
      }
      const waiters = set;
      const wake = () => {
        clearTimeout(timer);
        waiters.delete(wake);
        if (waiters.size === 0 && entry.waiters.get(messageId) === waiters) entry.waiters.delete(messageId);
        resolve(true);
      };
      const timer = setTimeout(() => {
        waiters.delete(wake);
        if (waiters.size === 0 && entry.waiters.get(messageId) === waiters) entry.waiters.delete(messageId);
        resolve(false);
      }, waitMs);
      waiters.add(wake);
    });
    chatAckWaits.inc({ result: passed ? 'delivered' : 'timeout' });
  }

  /** Subscribes the socket to its user's notifications, once the bus routes them to this node. */
  async watchUser(member: ChatMember): Promise<void> {
    if (this.#closing || !member.open) throw new Error('connection closed');
    const { userId } = member;
    let entry = this.#users.get(userId);
    if (!entry) {
      entry = this.#createUser(userId);
      this.#users.set(userId, entry);
    }
    entry.members.add(member);
    member.subscribe(userTopic(userId));
    try {
      await entry.ready;
    } catch (error) {
      entry.members.delete(member);
      if (member.open) member.unsubscribe(userTopic(userId));
      throw error;
    }
  }

  unwatchUser(member: ChatMember): void {
    const entry = this.#users.get(member.userId);
    if (!entry?.members.delete(member)) return;
    if (member.open) member.unsubscribe(userTopic(member.userId));
    if (entry.members.size > 0) return;
    this.#users.delete(member.userId);
    for (const subscription of entry.subscriptions) subscription.unsubscribe();
    this.#releaseProgress();
  }

  close(): void {
    this.#closing = true;
    this.#stopPolling();
    for (const entry of [...this.#rooms.values(), ...this.#users.values()]) {
      for (const subscription of entry.subscriptions) subscription.unsubscribe();
    }
    for (const entry of this.#rooms.values())
      for (const waiters of entry.waiters.values()) for (const wake of waiters) wake();
    this.#rooms.clear();
    this.#users.clear();
    this.#releaseProgress();
  }

  /** The shared subscription to every track's progress, made with the first watched user. */
  #progressSubscription(): Subscription {
    if (this.#progress) return this.#progress;
    const subscription = this.#options.bus.subscribe(ALL_TRACK_PROGRESS, (payload) => {
      const parsed = trackProgressEventSchema.safeParse(payload);
      if (!parsed.success) {
        this.#log.warn('ignoring a malformed track progress event');
        return;
      }
      const { ownerId, trackId, status, progress, stage, failureReason } = parsed.data;
      const entry = this.#users.get(ownerId);
      if (!entry) return;
      this.#publish(entry, userTopic(ownerId), {
        notification: 'track.progress',
        data: {
          trackId,
          status,
          progress,
          ...(stage ? { stage } : {}),
          ...(failureReason ? { failureReason } : {}),
        },
      });
    });
    subscription.ready.catch((error: unknown) => {
      this.#log.error({ err: error }, 'could not subscribe to track progress on the bus');
      if (this.#progress === subscription) this.#progress = null;
      subscription.unsubscribe();
    });
    this.#progress = subscription;
    return subscription;
  }

  #releaseProgress(): void {
    if (this.#users.size > 0 || !this.#progress) return;
    this.#progress.unsubscribe();
    this.#progress = null;
  }

  /** Publishes once to the topic, after disconnecting the members this message would overflow. */
  #publish(entry: Shared, topic: string, frame: NotificationFrame): void {
    if (this.#closing) return;
    const text = JSON.stringify(frame);
    if (entry.pendingBytes === 0) {
      setImmediate(() => {
        entry.pendingBytes = 0;
      });
    }
    entry.pendingBytes += Buffer.byteLength(text);
    for (const member of [...entry.members]) {
      if (member.open && member.dropIfSlow(entry.pendingBytes)) chatSlowConsumers.inc();
    }
    this.#options.app.publish(topic, text);
    wsNotifications.inc({ notification: frame.notification });
  }

  /**
   * Publishes one bus event's frames to the room's topic, after taking off it the members the
   * frames would put over `pauseBytes`; members already off it note the ids they miss.
   */
  #publishRoom(entry: RoomEntry, frames: readonly NotificationFrame[], ids: readonly number[]): void {
    if (this.#closing) return;
    const texts = frames.map((frame) => JSON.stringify(frame));
    const bytes = texts.reduce((sum, text) => sum + Buffer.byteLength(text), 0);
    if (entry.pendingBytes === 0 && entry.tick === null) {
      setImmediate(() => {
        entry.pendingBytes = 0;
        entry.tick = null;
      });
    }
    entry.pendingBytes += bytes;
    const span = spanOf(ids);
    const limit = this.#options.pauseBytes ?? DEFAULT_PAUSE_BYTES;
    if (span) for (const missed of entry.paused.values()) widen(missed, span);
    // No buffer grows by more than the edge writes: under the limit that way, nobody needs a look.
    const written = this.#options.app.bytes - entry.checkedAt;
    if (entry.checkedPeak + written + bytes > limit) this.#checkMembers(entry, span, limit);
    for (const text of texts) this.#options.app.publish(roomTopic(entry.roomId), text);
    for (const frame of frames) wsNotifications.inc({ notification: frame.notification });
    const receiving = entry.members.size - entry.paused.size;
    if (receiving > 0) chatDeliveries.inc(frames.length * receiving);
    if (span) {
      if (entry.tick) widen(entry.tick, span);
      else entry.tick = { ...span };
    }
  }

  /**
   * Reads every subscribed member's buffer: one that this tick's publishes (the one about to go
   * out included) would put over `limit` comes off the topic. Notes the fullest one that stays.
   */
  #checkMembers(entry: RoomEntry, span: Missed | null, limit: number): void {
    let peak = 0;
    for (const member of entry.members) {
      if (entry.paused.has(member) || !member.open) continue;
      const buffered = member.bufferedAmount() + entry.pendingBytes;
      if (buffered > limit) {
        this.#pause(entry, member, span);
        continue;
      }
      if (buffered > peak) peak = buffered;
    }
    entry.checkedPeak = peak;
    entry.checkedAt = this.#options.app.bytes;
    if (peak > bufferedPeak) {
      bufferedPeak = peak;
      chatBufferedPeak.set(peak);
    }
  }

  #pause(entry: RoomEntry, member: ChatMember, span: Missed | null): void {
    // What this tick already published to the topic is lost for it once it leaves the topic.
    const missed: Missed = entry.tick ? { ...entry.tick } : { minId: Number.MAX_SAFE_INTEGER, maxId: 0 };
    if (span) widen(missed, span);
    member.unsubscribe(roomTopic(entry.roomId));
    entry.paused.set(member, missed);
    chatPaused.inc();
    this.#poller ??= setInterval(() => this.#resumeDrained(), this.#options.pollMs ?? 50);
  }

  /** Puts drained members back on their rooms' topics and tells each what it missed. */
  #resumeDrained(): void {
    const under = this.#options.resumeBytes ?? DEFAULT_RESUME_BYTES;
    let waiting = 0;
    for (const entry of this.#rooms.values()) {
      for (const [member, missed] of entry.paused) {
        if (!member.open) {
          entry.paused.delete(member);
          continue;
        }
        if (member.bufferedAmount() > under) {
          waiting++;
          continue;
        }
        entry.paused.delete(member);
        // Back on the topic first: the gap's end and the live messages after it then meet.
        member.subscribe(roomTopic(entry.roomId));
        entry.checkedPeak = Number.POSITIVE_INFINITY;
        if (missed.maxId > 0) {
          member.send({
            notification: 'chat.gap',
            data: { roomId: entry.roomId, afterMessageId: missed.minId - 1, throughMessageId: missed.maxId },
          });
        }
      }
    }
    if (waiting === 0) this.#stopPolling();
  }

  #stopPolling(): void {
    if (this.#poller) clearInterval(this.#poller);
    this.#poller = null;
  }

  #seen(entry: RoomEntry, messageId: number): void {
    if (!entry.recent.has(messageId)) {
      entry.recent.add(messageId);
      if (entry.recent.size > RECENT_IDS) {
        const oldest = entry.recent.values().next().value;
        if (oldest !== undefined) entry.recent.delete(oldest);
      }
    }
    if (messageId > entry.newest) entry.newest = messageId;
    // A room's events leave a control plane in id order: an older id waiting has passed too.
    for (const [id, waiters] of entry.waiters) {
      if (id <= messageId) for (const wake of [...waiters]) wake();
    }
  }

  #createRoom(roomId: number): RoomEntry {
    const { bus } = this.#options;
    const entry: RoomEntry = {
      roomId,
      members: new Set(),
      subscriptions: [],
      ready: Promise.resolve(),
      pendingBytes: 0,
      newest: 0,
      recent: new Set(),
      waiters: new Map(),
      paused: new Map(),
      tick: null,
      checkedPeak: Number.POSITIVE_INFINITY,
      checkedAt: 0,
    };
    const messages = bus.subscribe(roomSubject(roomId), (payload) => {
      const events = parseRoomEvents(payload);
      const frames: NotificationFrame[] = [];
      const ids: number[] = [];
      for (const event of events ?? []) {
        const message = chatMessageOf(event);
        const eventType = event.eventType as MessageEventType;
        if (message.roomId !== roomId || !MESSAGE_EVENT_TYPES.includes(eventType)) break;
        frames.push({
          notification: 'chat.message',
          data: { roomId, eventType, message: toWireMessage(message) },
        });
        ids.push(message.messageId);
      }
      if (!events || frames.length !== events.length) {
        this.#log.warn({ roomId }, 'ignoring a malformed chat event');
        return;
      }
      this.#publishRoom(entry, frames, ids);
      events.forEach((event, index) => {
        const id = ids[index];
        if (event.eventType === 'created' && id !== undefined) this.#seen(entry, id);
      });
    });
    const activity = bus.subscribe(activitySubject(roomId), (payload) => {
      const parsed = parseActivityEvent(payload);
      const wire = parsed && parsed.roomId === roomId ? toWireActivity(parsed) : null;
      if (!wire) {
        this.#log.warn({ roomId }, 'ignoring a malformed room activity event');
        return;
      }
      const frame: NotificationFrame = { notification: 'chat.activity', data: wire };
      if (wire.activityType === 'banned') {
        // Out of the topic first, then told directly: a published copy could not reach them any more.
        for (const member of [...entry.members]) {
          if (member.userId !== wire.userId) continue;
          this.leave(member, roomId);
          member.removedFrom(roomId);
          if (member.open) member.send(frame);
        }
      }
      this.#publishRoom(entry, [frame], []);
    });
    entry.subscriptions.push(messages, activity);
    entry.ready = Promise.all([messages.ready, activity.ready]).then(() => undefined);
    // Awaited by every enter(); this keeps a failure from also counting as unhandled.
    entry.ready.catch((error: unknown) => {
      this.#log.error({ err: error, roomId }, 'could not subscribe to a chat room on the bus');
      if (this.#rooms.get(roomId) === entry) this.#rooms.delete(roomId);
      for (const subscription of entry.subscriptions) subscription.unsubscribe();
    });
    return entry;
  }

  #createUser(userId: number): Shared {
    const topic = userTopic(userId);
    const entry: Shared = {
      members: new Set(),
      subscriptions: [],
      ready: Promise.resolve(),
      pendingBytes: 0,
    };
    const subscription = this.#options.bus.subscribe(notificationSubject(userId), (payload) => {
      const notification = parseNotificationEvent(payload);
      if (!notification || notification.userId !== userId) {
        this.#log.warn({ userId }, 'ignoring a malformed notification event');
        return;
      }
      this.#publish(entry, topic, {
        notification: 'notifications.new',
        data: toWireNotification(notification),
      });
    });
    entry.subscriptions.push(subscription);
    entry.ready = Promise.all([subscription.ready, this.#progressSubscription().ready]).then(() => undefined);
    entry.ready.catch((error: unknown) => {
      this.#log.error({ err: error, userId }, 'could not subscribe to notifications on the bus');
      if (this.#users.get(userId) === entry) this.#users.delete(userId);
      subscription.unsubscribe();
      this.#releaseProgress();
    });
    return entry;
  }
}
