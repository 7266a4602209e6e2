/**
 * PostgreSQL access for rooms, memberships, messages and room sanctions (mutes, bans): the
 * only code that touches those tables. Reads for members never return flagged messages, and
 * show deleted ones as deleted with no content; moderation alone reads messages as written.
 */

import type { Sql, TransactionSql } from '../../common/db/index.js';
import type { ChatMessage, Room } from '../../proto/gen/veza/chat/chat.js';
import { usernamesOf } from '../auth/index.js';
import { streamStateOf } from '../streams/index.js';

type Db = Sql | TransactionSql;

export interface RoomRow {
  id: number;
  name: string;
  description: string;
  owner_id: number;
  stream_id: number | null;
  is_private: boolean;
  created_at: Date;
  last_message_id: number;
  /** The stream's status when the room is a stream's chat. */
  stream_status: 'live' | 'ended' | null;
}

export interface MessageRow {
  id: number;
  room_id: number;
  user_id: number;
  username: string;
  content: string;
  message_type: string;
  metadata: Buffer;
  reply_to_id: number | null;
  client_message_id: string | null;
  flagged: boolean;
  moderation_reasons: string[];
  deleted_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export function toRoom(row: RoomRow): Room {
  return {
    roomId: row.id,
    name: row.name,
    description: row.description,
    ownerId: row.owner_id,
    streamId: row.stream_id ?? 0,
    isPrivate: row.is_private,
    createdAt: row.created_at,
  };
}

/** A message as members see it: a deleted one keeps its place but not its content. */
export function toChatMessage(row: MessageRow): ChatMessage {
  const deleted = row.deleted_at !== null;
  return {
    messageId: row.id,
    roomId: row.room_id,
    userId: row.user_id,
    username: row.username,
    content: deleted ? '' : row.content,
    messageType: row.message_type,
    metadata: deleted ? Buffer.alloc(0) : row.metadata,
    replyToId: row.reply_to_id ?? 0,
    clientMessageId: row.client_message_id ?? '',
    deleted,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export interface Sanction {
  expiresAt: Date | null;
  reason: string;
}

export interface ActiveSanctions {
  ban: Sanction | null;
  mute: Sanction | null;
}

export interface SenderRow extends ActiveSanctions {
  member: boolean;
  /** Newest first, flagged ones included. */
  recent: MessageRow[];
}

/** What became of one message of a batch, in the batch's order. */
export type BatchOutcome =
  | { kind: 'stored'; id: number; createdAt: Date; updatedAt: Date }
  /** The same (room, user, client_message_id) is already stored: nothing new was. */
  | { kind: 'conflict' }
  | { kind: 'banned' }
  | { kind: 'not_member' }
  | { kind: 'muted'; until: Date }
  | { kind: 'bad_reply' };

export type BatchResult = { kind: 'stored'; rows: BatchOutcome[] } | { kind: 'no_room' };

interface BatchRow {
  ord: number;
  banned: boolean;
  member: boolean;
  muted_until: Date | null;
  reply_ok: boolean;
  id: number | null;
  created_at: Date | null;
  updated_at: Date | null;
}

/** The refusals in the order the send path checks them: ban, membership, mute, reply. */
function outcomeOf(row: BatchRow): BatchOutcome {
  if (row.banned) return { kind: 'banned' };
  if (!row.member) return { kind: 'not_member' };
  if (row.muted_until) return { kind: 'muted', until: row.muted_until };
  if (!row.reply_ok) return { kind: 'bad_reply' };
  if (row.id === null || !row.created_at || !row.updated_at) return { kind: 'conflict' };
  return { kind: 'stored', id: row.id, createdAt: row.created_at, updatedAt: row.updated_at };
}

export interface NewMessage {
  roomId: number;
  userId: number;
  content: string;
  messageType: string;
  metadata: Buffer;
  replyToId: number | null;
  clientMessageId: string | null;
  flagged: boolean;
  score: number;
  reasons: readonly string[];
}

type StoredMessage = Omit<MessageRow, 'username'>;

/** Adds the authors' usernames; a message whose author is gone (deleted meanwhile) is left out. */
async function withAuthors(db: Db, rows: readonly StoredMessage[]): Promise<MessageRow[]> {
  const usernames = await usernamesOf(
    db,
    rows.map((row) => row.user_id),
  );
  return rows.flatMap((row) => {
    const username = usernames.get(row.user_id);
    return username === undefined ? [] : [{ ...row, username }];
  });
}

/** At most this many messages of a stream are replayed beside its recording. */
export const REPLAY_MESSAGE_LIMIT = 5000;

/**
 * A room's messages as a replay shows them, oldest first: those moderation refused (flagged) and
 * those someone deleted are left out, so a replay never shows what the live chat took back.
 */
export async function replayMessages(
  db: Db,
  roomId: number,
): Promise<{ id: number; user_id: number; username: string; content: string; created_at: Date }[]> {
  const rows = await db<StoredMessage[]>`
    select m.id, m.room_id, m.user_id, m.content, m.message_type, m.metadata, m.reply_to_id,
           m.client_message_id, m.flagged, m.moderation_reasons, m.deleted_at, m.created_at, m.updated_at
    from chat_messages m
    where m.room_id = ${roomId} and not m.flagged and m.deleted_at is null
    order by m.id asc limit ${REPLAY_MESSAGE_LIMIT}`;
  return (await withAuthors(db, rows)).map(({ id, user_id, username, content, created_at }) => ({
    id,
    user_id,
    username,
    content,
    created_at,
  }));
}

export function createChatStore(sql: Sql) {
  const selectMessages = (db: Db) => db`
    select m.id, m.room_id, m.user_id, m.content, m.message_type, m.metadata, m.reply_to_id,
           m.client_message_id, m.flagged, m.moderation_reasons, m.deleted_at, m.created_at, m.updated_at
    from chat_messages m`;

  const getMessage = async (db: Db, id: number): Promise<MessageRow | null> => {
    const rows = await db<StoredMessage[]>`${selectMessages(db)} where m.id = ${id}`;
    const [row] = await withAuthors(db, rows);
    return row ?? null;
  };

  const sanctionsOf = async (roomId: number, userId: number): Promise<ActiveSanctions> => {
    const [row] = await sql<
      {
        ban_reason: string | null;
        ban_expires: Date | null;
        banned: boolean;
        mute_reason: string | null;
        mute_expires: Date | null;
      }[]
    >`
      select b.reason as ban_reason, b.expires_at as ban_expires, b.user_id is not null as banned,
             m.reason as mute_reason, m.expires_at as mute_expires
      from (select 1) one
      left join chat_room_bans b
        on b.room_id = ${roomId} and b.user_id = ${userId} and (b.expires_at is null or b.expires_at > now())
      left join chat_room_mutes m
        on m.room_id = ${roomId} and m.user_id = ${userId} and m.expires_at > now()`;
    return {
      ban: row?.banned ? { expiresAt: row.ban_expires, reason: row.ban_reason ?? '' } : null,
      mute: row?.mute_expires ? { expiresAt: row.mute_expires, reason: row.mute_reason ?? '' } : null,
    };
  };

  return {
    async room(roomId: number): Promise<RoomRow | null> {
      const [row] = await sql<Omit<RoomRow, 'stream_status'>[]>`
        select id, name, description, owner_id, stream_id, is_private, created_at, last_message_id
        from chat_rooms where id = ${roomId}`;
      if (!row) return null;
      const stream = row.stream_id === null ? null : await streamStateOf(sql, row.stream_id);
      return { ...row, stream_status: stream?.status ?? null };
    },

    async roomExists(roomId: number): Promise<boolean> {
      const [row] = await sql`select 1 from chat_rooms where id = ${roomId}`;
      return row !== undefined;
    },

    /** Creates the chat room of a stream in the stream's transaction (streams' StreamChatRooms). */
    async openForStream(
      tx: TransactionSql,
      room: { name: string; description: string; ownerId: number; isPrivate: boolean },
    ): Promise<number> {
      const [row] = await tx<{ id: number }[]>`
        insert into chat_rooms (name, description, owner_id, is_private)
        values (${room.name}, ${room.description}, ${room.ownerId}, ${room.isPrivate})
        returning id`;
      if (!row) throw new Error('chat room insert returned nothing');
      return row.id;
    },

    async linkToStream(tx: TransactionSql, roomId: number, streamId: number): Promise<void> {
      await tx`update chat_rooms set stream_id = ${streamId} where id = ${roomId}`;
    },

    /** Creates a room with its owner as the first member. */
    async createRoom(input: {
      name: string;
      description: string;
      ownerId: number;
      isPrivate: boolean;
    }): Promise<RoomRow> {
      return sql.begin(async (tx) => {
        const [row] = await tx<RoomRow[]>`
          insert into chat_rooms (name, description, owner_id, is_private)
          values (${input.name}, ${input.description}, ${input.ownerId}, ${input.isPrivate})
          returning id, name, description, owner_id, stream_id, is_private, created_at, last_message_id,
                    null::text as stream_status`;
        if (!row) throw new Error('room insert returned nothing');
        await tx`insert into chat_room_members (room_id, user_id) values (${row.id}, ${input.ownerId})`;
        return row;
      });
    },

    async isMember(roomId: number, userId: number): Promise<boolean> {
      const [row] =
        await sql`select 1 from chat_room_members where room_id = ${roomId} and user_id = ${userId}`;
      return row !== undefined;
    },

    async join(roomId: number, userId: number): Promise<void> {
      await sql`insert into chat_room_members (room_id, user_id) values (${roomId}, ${userId}) on conflict do nothing`;
    },

    async leave(roomId: number, userId: number): Promise<boolean> {
      const rows =
        await sql`delete from chat_room_members where room_id = ${roomId} and user_id = ${userId} returning 1`;
      return rows.length > 0;
    },

    getMessage: (id: number) => getMessage(sql, id),

    usernamesOf: (userIds: readonly number[]) => usernamesOf(sql, userIds),

    /** The room of a message members can see (not flagged); null when there is none. */
    async roomOfVisibleMessage(messageId: number): Promise<number | null> {
      const [row] = await sql<{ room_id: number }[]>`
        select room_id from chat_messages where id = ${messageId} and not flagged`;
      return row?.room_id ?? null;
    },

    /**
     * Messages by id as their authors wrote them, flagged and deleted ones included: the
     * moderation queue shows what was reported, whatever happened to it since.
     */
    async messagesAsWritten(ids: readonly number[]): Promise<Map<number, ChatMessage>> {
      if (ids.length === 0) return new Map();
      const rows = await sql<StoredMessage[]>`
        ${selectMessages(sql)} where m.id = any(${sql.array([...ids])}::bigint[])`;
      const usernames = await usernamesOf(
        sql,
        rows.map((row) => row.user_id),
      );
      return new Map(
        rows.map((row) => [
          row.id,
          {
            messageId: row.id,
            roomId: row.room_id,
            userId: row.user_id,
            content: row.content,
            messageType: row.message_type,
            metadata: row.metadata,
            replyToId: row.reply_to_id ?? 0,
            createdAt: row.created_at,
            updatedAt: row.updated_at,
            clientMessageId: row.client_message_id ?? '',
            username: usernames.get(row.user_id) ?? '',
            deleted: row.deleted_at !== null,
          },
        ]),
      );
    },

    /** Approving a flagged message: in the caller's transaction, which also resolves its report. */
    async unflagMessage(tx: TransactionSql, messageId: number): Promise<void> {
      await tx`update chat_messages set flagged = false where id = ${messageId}`;
    },

    async byClientId(roomId: number, userId: number, clientMessageId: string): Promise<MessageRow | null> {
      const rows = await sql<StoredMessage[]>`
        ${selectMessages(sql)}
        where m.room_id = ${roomId} and m.user_id = ${userId} and m.client_message_id = ${clientMessageId}`;
      const [row] = await withAuthors(sql, rows);
      return row ?? null;
    },

    /**
     * What a control plane keeps in memory about one sender in one room (room-states.ts):
     * membership, sanctions in force, and their latest messages (flagged ones too, newest
     * first) for the repeat rule and for answering a retried client_message_id.
     */
    async sender(roomId: number, userId: number, recentLimit: number): Promise<SenderRow> {
      const [member, sanctions, recent] = await Promise.all([
        sql`select 1 from chat_room_members where room_id = ${roomId} and user_id = ${userId}`,
        sanctionsOf(roomId, userId),
        sql<StoredMessage[]>`
          ${selectMessages(sql)}
          where m.room_id = ${roomId} and m.user_id = ${userId}
          order by m.id desc limit ${recentLimit}`.then((rows) => withAuthors(sql, rows)),
      ]);
      return { member: member.length > 0, ...sanctions, recent };
    },

    /**
     * Stores one group commit of a room's messages in one statement, so one round trip (batcher.ts).
     * The statement takes the room's row lock first and only then hands out ids (every id comes
     * from a row joined with the locked room), and commits before the lock is released: ids are
     * handed out in commit order across processes. What a send must not bypass is checked in the
     * same statement: membership, a ban, a mute, the reply's target. A sanction committed before
     * the statement started (so before any send that began after the sanction call returned)
     * refuses the message on every control plane, whatever its memory says. A retried
     * client_message_id that is already stored comes back as `conflict`.
     */
    async insertBatch(roomId: number, batch: readonly NewMessage[]): Promise<BatchResult> {
      const input = batch.map((row) => ({
        user_id: row.userId,
        content: row.content,
        message_type: row.messageType,
        metadata: row.metadata.toString('base64'),
        reply_to_id: row.replyToId,
        client_message_id: row.clientMessageId,
        flagged: row.flagged,
        score: row.score,
        reasons: [...row.reasons],
      }));
      const rows = await sql<(BatchRow & { room_found: boolean })[]>`
        with locked as (
          select id from chat_rooms where id = ${roomId} for no key update
        ),
        input as (
          select e.ord,
                 (e.doc->>'user_id')::bigint as user_id,
                 e.doc->>'content' as content,
                 e.doc->>'message_type' as message_type,
                 decode(e.doc->>'metadata', 'base64') as metadata,
                 (e.doc->>'reply_to_id')::bigint as reply_to_id,
                 e.doc->>'client_message_id' as client_message_id,
                 (e.doc->>'flagged')::boolean as flagged,
                 (e.doc->>'score')::real as score,
                 array(select jsonb_array_elements_text(e.doc->'reasons')) as reasons
          from jsonb_array_elements(${sql.json(input)}::jsonb) with ordinality as e(doc, ord)
        ),
        checked as (
          select i.*,
                 exists (select 1 from chat_room_bans b
                         where b.room_id = ${roomId} and b.user_id = i.user_id
                           and (b.expires_at is null or b.expires_at > now())) as banned,
                 exists (select 1 from chat_room_members c
                         where c.room_id = ${roomId} and c.user_id = i.user_id) as member,
                 (select m.expires_at from chat_room_mutes m
                  where m.room_id = ${roomId} and m.user_id = i.user_id and m.expires_at > now()) as muted_until,
                 (i.reply_to_id is null
                  or exists (select 1 from chat_messages r
                             where r.id = i.reply_to_id and r.room_id = ${roomId} and not r.flagged)) as reply_ok
          from input i
        ),
        allowed as (
          -- Joined with the locked room: no id is taken before the lock is held.
          select c.ord, nextval('chat_messages_id_seq') as id
          from checked c cross join locked
          where not c.banned and c.member and c.muted_until is null and c.reply_ok
          order by c.ord
        ),
        inserted as (
          insert into chat_messages (id, room_id, user_id, content, message_type, metadata, reply_to_id,
                                     client_message_id, flagged, moderation_score, moderation_reasons)
          select a.id, ${roomId}, c.user_id, c.content, c.message_type, c.metadata, c.reply_to_id,
                 c.client_message_id, c.flagged, c.score, c.reasons
          from allowed a join checked c using (ord)
          order by a.id
          on conflict (room_id, user_id, client_message_id) where client_message_id is not null do nothing
          returning id, flagged, created_at, updated_at
        ),
        bumped as (
          update chat_rooms
          set last_message_id = greatest(last_message_id, (select max(id) from inserted where not flagged))
          where id = ${roomId} and exists (select 1 from inserted where not flagged)
        )
        select c.ord, c.banned, c.member, c.muted_until, c.reply_ok, i.id, i.created_at, i.updated_at,
               exists (select 1 from locked) as room_found
        from checked c left join allowed a using (ord) left join inserted i on i.id = a.id
        order by c.ord`;
      if (!rows[0]?.room_found) return { kind: 'no_room' };
      return { kind: 'stored', rows: rows.map(outcomeOf) };
    },

    async editMessage(id: number, content: string): Promise<MessageRow | null> {
      const [row] = await sql<{ id: number }[]>`
        update chat_messages set content = ${content}, updated_at = now()
        where id = ${id} and deleted_at is null and not flagged
        returning id`;
      return row ? getMessage(sql, row.id) : null;
    },

    async deleteMessage(id: number, deletedBy: number): Promise<MessageRow | null> {
      const [row] = await sql<{ id: number }[]>`
        update chat_messages set deleted_at = now(), deleted_by = ${deletedBy}, updated_at = now()
        where id = ${id} and deleted_at is null
        returning id`;
      return row ? getMessage(sql, row.id) : null;
    },

    sanctionsOf: (roomId: number, userId: number) => sanctionsOf(roomId, userId),

    /** Returns when the mute ends. */
    async mute(input: {
      roomId: number;
      userId: number;
      actorId: number;
      durationS: number;
      reason: string;
    }): Promise<Date> {
      const [row] = await sql<{ expires_at: Date }[]>`
        insert into chat_room_mutes (room_id, user_id, muted_by, reason, expires_at)
        values (${input.roomId}, ${input.userId}, ${input.actorId}, ${input.reason},
                now() + make_interval(secs => ${input.durationS}))
        on conflict (room_id, user_id) do update
          set muted_by = excluded.muted_by, reason = excluded.reason, created_at = now(), expires_at = excluded.expires_at
        returning expires_at`;
      if (!row) throw new Error('mute upsert returned nothing');
      return row.expires_at;
    },

    async unmute(roomId: number, userId: number): Promise<boolean> {
      const rows =
        await sql`delete from chat_room_mutes where room_id = ${roomId} and user_id = ${userId} returning 1`;
      return rows.length > 0;
    },

    /** Bans and removes the membership in one transaction: a banned user is no member. */
    async ban(input: {
      roomId: number;
      userId: number;
      actorId: number;
      durationS: number | null;
      reason: string;
    }): Promise<Date | null> {
      return sql.begin(async (tx) => {
        const expires = input.durationS === null ? null : input.durationS;
        const [row] = await tx<{ expires_at: Date | null }[]>`
          insert into chat_room_bans (room_id, user_id, banned_by, reason, expires_at)
          values (${input.roomId}, ${input.userId}, ${input.actorId}, ${input.reason},
                  case when ${expires}::int is null then null else now() + make_interval(secs => ${expires}::int) end)
          on conflict (room_id, user_id) do update
            set banned_by = excluded.banned_by, reason = excluded.reason, created_at = now(), expires_at = excluded.expires_at
          returning expires_at`;
        await tx`delete from chat_room_members where room_id = ${input.roomId} and user_id = ${input.userId}`;
        return row?.expires_at ?? null;
      });
    },

    async unban(roomId: number, userId: number): Promise<boolean> {
      const rows =
        await sql`delete from chat_room_bans where room_id = ${roomId} and user_id = ${userId} returning 1`;
      return rows.length > 0;
    },

    /**
     * A page of visible messages in ascending id order. With `after` it reads forwards from
     * there; otherwise it reads backwards from `before` (or the newest), so the page ends
     * where the reader stands. `hasMore` says whether the reading direction has more.
     */
    async history(
      roomId: number,
      options: { limit: number; beforeId: number; afterId: number },
    ): Promise<{ messages: MessageRow[]; hasMore: boolean }> {
      const after = options.afterId;
      const before = options.beforeId > 0 ? options.beforeId : Number.MAX_SAFE_INTEGER;
      const forwards = options.afterId > 0;
      const rows = forwards
        ? await sql<StoredMessage[]>`
            ${selectMessages(sql)}
            where m.room_id = ${roomId} and not m.flagged and m.id > ${after} and m.id < ${before}
            order by m.id asc limit ${options.limit + 1}`
        : await sql<StoredMessage[]>`
            ${selectMessages(sql)}
            where m.room_id = ${roomId} and not m.flagged and m.id < ${before}
            order by m.id desc limit ${options.limit + 1}`;
      const hasMore = rows.length > options.limit;
      const page = await withAuthors(sql, rows.slice(0, options.limit));
      return { messages: forwards ? page : page.reverse(), hasMore };
    },
  };
}
export type ChatStore = ReturnType<typeof createChatStore>;
