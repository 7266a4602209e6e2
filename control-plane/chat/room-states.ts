/**
 * What a send checks, kept in this control plane's memory instead of read from PostgreSQL per
 * message: the room (exists, private, its stream ended), and per sender their membership,
 * sanctions (ban, mute, with their ends), latest messages (the repeat rule) and the answers to
 * their recent client message ids (a retried send).
 *
 * - A room is loaded on first use: its subjects are subscribed first and the row read after,
 *   so nothing committed after the read is missed. A sender is loaded the same way, in one
 *   round of queries, on their first send or read in the room; events that arrive while it
 *   loads are applied on top of what the load read.
 * - Kept current by events every control plane publishes after committing (`chat.state.<id>`:
 *   joins, leaves, bans, mutes and their lifting; `stream.ended` closes a stream's room) and by
 *   the room's own message batches (`chat.room.<id>`), which carry other control planes'
 *   messages for the repeat rule and the retry answers.
 * - The memory refuses early; it never has the last word on letting a message through: the
 *   batch insert checks membership and sanctions again in PostgreSQL after the room's lock
 *   (store.ts insertBatch). A sanction another control plane committed before that insert
 *   refuses the message even if its event has not arrived here yet. A refusal for "not a
 *   member" is checked against PostgreSQL before it is given, since a join on another control
 *   plane may be a few milliseconds ahead of its event; a refusal for a sanction is checked
 *   again when memory last read it more than SANCTION_RECHECK_MS ago, so a lifting whose event
 *   was lost (NATS core delivers at most once, e.g. across a reconnect) heals by itself.
 * - Senders idle for `idleMs` are forgotten, then rooms with no senders left.
 */

import {
  chatMessageOf,
  NotFoundError,
  parseRoomEvents,
  parseRoomStateEvent,
  type RoomStateEvent,
  roomStateSubject,
  roomSubject,
  STREAM_ENDED,
  streamEndedEventSchema,
} from '../../common/contracts/index.js';
import type { Logger } from '../../common/index.js';
import type { EventBus, Subscription } from '../../common/ports/index.js';
import type { ChatMessage } from '../../proto/gen/veza/chat/chat.js';
import { REPEAT_SAMPLE, REPEAT_WINDOW_S } from './limits.js';
import { type ChatStore, type RoomRow, type Sanction, toChatMessage } from './store.js';

/** A previous send with a client message id: what a retry of it gets. */
export type Answer =
  | { kind: 'pending'; promise: Promise<ChatMessage> }
  | { kind: 'stored'; message: ChatMessage }
  /** Stored flagged: the retry gets the same refusal. */
  | { kind: 'flagged'; reasons: readonly string[] };

interface RecentMessage {
  id: number;
  content: string;
  at: number;
}

export interface Sender {
  readonly userId: number;
  member: boolean;
  ban: Sanction | null;
  mute: Sanction | null;
  /** Newest first, at most REPEAT_SAMPLE. */
  recent: RecentMessage[];
  answers: Map<string, Answer>;
  lastUsed: number;
  /** When membership and sanctions were last read from PostgreSQL. */
  checkedAt: number;
  /** Counts the events applied: a sanctions re-read started before one must not undo it. */
  version: number;
}

export interface RoomEntry {
  readonly roomId: number;
  /** The room as loaded; `stream_status` follows `stream.ended`. */
  readonly room: RoomRow;
  readonly senders: Map<number, Sender>;
  readonly loading: Map<number, { promise: Promise<Sender>; events: RoomStateEvent[] }>;
  readonly subscriptions: Subscription[];
  lastUsed: number;
  /** The room's group commit (chat.ts), kept while it has work. */
  commits: { readonly idle: boolean } | null;
}

/** Answers remembered per sender: enough for a client's retries, bounded for a chatty one. */
const ANSWERS_KEPT = 64;
/** Messages read per sender on load: the repeat sample and a few retry answers. */
const RECENT_LOADED = 20;

export interface RoomStatesOptions {
  store: ChatStore;
  bus: EventBus;
  log: Logger;
  /** Senders and rooms unused this long are forgotten (default 10 min). */
  idleMs?: number;
}

export function isBanned(sender: Sender, now = Date.now()): boolean {
  return sender.ban !== null && (sender.ban.expiresAt === null || sender.ban.expiresAt.getTime() > now);
}

/** The mute in force, if any. */
export function muteOf(sender: Sender, now = Date.now()): Sanction | null {
  return sender.mute && (sender.mute.expiresAt?.getTime() ?? 0) > now ? sender.mute : null;
}

/** The sender's recent contents for the repeat rule, newest first. */
export function recentContents(sender: Sender, now = Date.now()): string[] {
  const since = now - REPEAT_WINDOW_S * 1000;
  return sender.recent.filter((message) => message.at > since).map((message) => message.content);
}

function applyEvent(sender: Sender, event: RoomStateEvent): void {
  sender.version++;
  switch (event.type) {
    case 'member_joined':
      sender.member = true;
      return;
    case 'member_left':
      sender.member = false;
      return;
    case 'banned':
      sender.ban = { expiresAt: event.until ? new Date(event.until) : null, reason: '' };
      sender.member = false;
      return;
    case 'unbanned':
      sender.ban = null;
      return;
    case 'muted':
      sender.mute = { expiresAt: new Date(event.until), reason: '' };
      return;
    case 'unmuted':
      sender.mute = null;
  }
}

function remember(sender: Sender, message: ChatMessage): void {
  if (!sender.recent.some((known) => known.id === message.messageId)) {
    sender.recent.push({
      id: message.messageId,
      content: message.content,
      at: message.createdAt?.getTime() ?? Date.now(),
    });
    sender.recent.sort((a, b) => b.id - a.id);
    sender.recent.length = Math.min(sender.recent.length, REPEAT_SAMPLE);
  }
}

export function setAnswer(sender: Sender, clientMessageId: string, answer: Answer): void {
  sender.answers.delete(clientMessageId);
  sender.answers.set(clientMessageId, answer);
  if (sender.answers.size > ANSWERS_KEPT) {
    const oldest = sender.answers.keys().next().value;
    if (oldest !== undefined) sender.answers.delete(oldest);
  }
}

export function createRoomStates(options: RoomStatesOptions) {
  const { store, bus } = options;
  const log = options.log.child({ component: 'chat-room-states' });
  const idleMs = options.idleMs ?? 10 * 60_000;
  const rooms = new Map<number, Promise<RoomEntry>>();
  const loaded = new Map<number, RoomEntry>();
  let closed = false;

  /** Re-reads a sender's sanctions after an event, so events crossing on the bus settle on the truth. */
  const settleSanctions = (entry: RoomEntry, sender: Sender) => {
    const version = sender.version;
    store.sanctionsOf(entry.roomId, sender.userId).then(
      (sanctions) => {
        if (sender.version !== version) return;
        sender.ban = sanctions.ban;
        sender.mute = sanctions.mute;
      },
      (error: unknown) => log.warn({ err: error, roomId: entry.roomId }, 'could not re-read sanctions'),
    );
  };

  const apply = (entry: RoomEntry, event: RoomStateEvent, settle: boolean) => {
    const sender = entry.senders.get(event.user_id);
    if (sender) {
      applyEvent(sender, event);
      if (settle && event.type !== 'member_joined' && event.type !== 'member_left') {
        settleSanctions(entry, sender);
      }
      return;
    }
    entry.loading.get(event.user_id)?.events.push(event);
  };

  const onState = (roomId: number, payload: unknown) => {
    const event = parseRoomStateEvent(payload);
    if (!event || event.room_id !== roomId) {
      log.warn({ roomId }, 'ignoring a malformed chat state event');
      return;
    }
    const entry = loaded.get(roomId);
    if (entry) apply(entry, event, true);
  };

  const onMessages = (roomId: number, payload: unknown) => {
    const entry = loaded.get(roomId);
    if (!entry) return;
    const events = parseRoomEvents(payload);
    if (!events) {
      log.warn({ roomId }, 'ignoring a malformed chat event');
      return;
    }
    for (const event of events) {
      const message = chatMessageOf(event);
      if (event.eventType !== 'created' || message.roomId !== roomId) continue;
      if (message.messageId > entry.room.last_message_id) entry.room.last_message_id = message.messageId;
      const sender = entry.senders.get(message.userId);
      if (!sender) continue;
      remember(sender, message);
      if (message.clientMessageId && !sender.answers.has(message.clientMessageId)) {
        setAnswer(sender, message.clientMessageId, { kind: 'stored', message });
      }
    }
  };

  const ended = bus.subscribe(STREAM_ENDED, (payload) => {
    const parsed = streamEndedEventSchema.safeParse(payload);
    if (!parsed.success) return;
    const entry = loaded.get(parsed.data.chat_room_id);
    if (entry) entry.room.stream_status = 'ended';
  });

  const loadRoom = async (roomId: number): Promise<RoomEntry> => {
    const subscriptions = [
      bus.subscribe(roomStateSubject(roomId), (payload) => onState(roomId, payload)),
      bus.subscribe(roomSubject(roomId), (payload) => onMessages(roomId, payload)),
    ];
    try {
      // Listening before reading: a change committed after the read arrives as an event.
      await Promise.all([ended.ready, ...subscriptions.map((subscription) => subscription.ready)]);
      const room = await store.room(roomId);
      if (!room) throw new NotFoundError(`room ${roomId} not found`);
      if (closed) throw new Error('chat room states closed');
      const entry: RoomEntry = {
        roomId,
        room,
        senders: new Map(),
        loading: new Map(),
        subscriptions,
        lastUsed: Date.now(),
        commits: null,
      };
      loaded.set(roomId, entry);
      return entry;
    } catch (error) {
      for (const subscription of subscriptions) subscription.unsubscribe();
      throw error;
    }
  };

  const loadSender = (entry: RoomEntry, userId: number): Promise<Sender> => {
    const events: RoomStateEvent[] = [];
    const promise = (async () => {
      try {
        const row = await store.sender(entry.roomId, userId, RECENT_LOADED);
        const sender: Sender = {
          userId,
          member: row.member,
          ban: row.ban,
          mute: row.mute,
          recent: [],
          answers: new Map(),
          lastUsed: Date.now(),
          checkedAt: Date.now(),
          version: 0,
        };
        // Oldest first, so the newest answers are the last forgotten.
        for (const message of [...row.recent].reverse()) {
          sender.recent.unshift({
            id: message.id,
            content: message.content,
            at: message.created_at.getTime(),
          });
          if (message.client_message_id) {
            setAnswer(
              sender,
              message.client_message_id,
              message.flagged
                ? { kind: 'flagged', reasons: message.moderation_reasons }
                : { kind: 'stored', message: toChatMessage(message) },
            );
          }
        }
        sender.recent.length = Math.min(sender.recent.length, REPEAT_SAMPLE);
        for (const event of events) applyEvent(sender, event);
        entry.senders.set(userId, sender);
        return sender;
      } finally {
        entry.loading.delete(userId);
      }
    })();
    entry.loading.set(userId, { promise, events });
    return promise;
  };

  const sweep = () => {
    const before = Date.now() - idleMs;
    for (const entry of loaded.values()) {
      for (const sender of entry.senders.values()) {
        const waiting = [...sender.answers.values()].some((answer) => answer.kind === 'pending');
        if (sender.lastUsed < before && !waiting) entry.senders.delete(sender.userId);
      }
      const busy = entry.senders.size > 0 || entry.loading.size > 0 || (entry.commits && !entry.commits.idle);
      if (!busy && entry.lastUsed < before) {
        loaded.delete(entry.roomId);
        rooms.delete(entry.roomId);
        for (const subscription of entry.subscriptions) subscription.unsubscribe();
      }
    }
  };
  const sweeper = setInterval(sweep, Math.min(60_000, idleMs));
  sweeper.unref();

  return {
    /** The room's state, loaded on first use; NotFoundError when there is no such room. */
    async room(roomId: number): Promise<RoomEntry> {
      let pending = rooms.get(roomId);
      if (!pending) {
        pending = loadRoom(roomId);
        rooms.set(roomId, pending);
        const mine = pending;
        // A missing room (or a failed load) is asked again next time, not remembered.
        mine.catch(() => {
          if (rooms.get(roomId) === mine) rooms.delete(roomId);
        });
      }
      const entry = await pending;
      entry.lastUsed = Date.now();
      return entry;
    },

    async sender(entry: RoomEntry, userId: number): Promise<Sender> {
      const known = entry.senders.get(userId);
      const sender = known ?? (await (entry.loading.get(userId)?.promise ?? loadSender(entry, userId)));
      sender.lastUsed = Date.now();
      return sender;
    },

    /** Reads membership and sanctions again (before refusing on what memory says). */
    async reload(entry: RoomEntry, sender: Sender): Promise<void> {
      const version = sender.version;
      const row = await store.sender(entry.roomId, sender.userId, 0);
      if (sender.version !== version) return;
      sender.checkedAt = Date.now();
      sender.member = row.member;
      sender.ban = row.ban;
      sender.mute = row.mute;
    },

    /** A message of the sender was stored (flagged ones too): the repeat rule counts it. */
    remember(sender: Sender, message: ChatMessage): void {
      remember(sender, message);
    },

    /**
     * Applies a committed change here at once, then tells the other control planes. The caller
     * returns after this, so its own later sends already see the change.
     */
    async announce(event: RoomStateEvent): Promise<void> {
      const entry = loaded.get(event.room_id);
      if (entry) apply(entry, event, false);
      try {
        await bus.publish(roomStateSubject(event.room_id), event);
      } catch (error) {
        // The batch insert checks PostgreSQL itself; other control planes only refuse later.
        log.error({ err: error, roomId: event.room_id }, 'could not publish a chat state event');
      }
    },

    close(): void {
      closed = true;
      clearInterval(sweeper);
      ended.unsubscribe();
      for (const entry of loaded.values())
        for (const subscription of entry.subscriptions) subscription.unsubscribe();
      loaded.clear();
      rooms.clear();
    },
  };
}

export type RoomStates = ReturnType<typeof createRoomStates>;
