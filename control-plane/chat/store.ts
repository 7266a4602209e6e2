/**
 * PostgreSQL access for rooms, memberships and messages. Reads never return flagged
 * messages, and show deleted ones as deleted with no content.
 */

import type { Sql, TransactionSql } from '../../common/db/index.js';
import type { ChatMessage, Room } from '../../proto/gen/veza/chat/chat.js';
import { usernamesOf } from '../auth/index.js';

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

  return {
    async room(roomId: number): Promise<RoomRow | null> {
      const [row] = await sql<RoomRow[]>`
        select r.id, r.name, r.description, r.owner_id, r.stream_id, r.is_private, r.created_at, r.last_message_id,
               s.status as stream_status
        from chat_rooms r left join streams s on s.id = r.stream_id
        where r.id = ${roomId}`;
      return row ?? null;
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

    async byClientId(roomId: number, userId: number, clientMessageId: string): Promise<MessageRow | null> {
      const rows = await sql<StoredMessage[]>`
        ${selectMessages(sql)}
        where m.room_id = ${roomId} and m.user_id = ${userId} and m.client_message_id = ${clientMessageId}`;
      const [row] = await withAuthors(sql, rows);
      return row ?? null;
    },

    /** The sender's latest messages in a room (flagged ones too), newest first, for repeat detection. */
    async recentContents(roomId: number, userId: number, windowS: number, limit: number): Promise<string[]> {
      const rows = await sql<{ content: string }[]>`
        select content from chat_messages
        where room_id = ${roomId} and user_id = ${userId} and created_at > now() - make_interval(secs => ${windowS})
        order by id desc limit ${limit}`;
      return rows.map((row) => row.content);
    },

    /** A visible (not flagged) message of the room, for reply_to_id. */
    async visibleInRoom(roomId: number, messageId: number): Promise<boolean> {
      const [row] = await sql`
        select 1 from chat_messages where id = ${messageId} and room_id = ${roomId} and not flagged`;
      return row !== undefined;
    },

    /**
     * Stores a message. The room's row lock serialises the sends of one room so ids are
     * handed out in commit order; a delivered message also becomes the room's last_message_id.
     * Returns null when (room, user, client_message_id) already exists (a concurrent retry).
     */
    async insertMessage(input: NewMessage): Promise<MessageRow | null> {
      return sql.begin(async (tx) => {
        await tx`select id from chat_rooms where id = ${input.roomId} for no key update`;
        const [inserted] = await tx<{ id: number }[]>`
          insert into chat_messages (room_id, user_id, content, message_type, metadata, reply_to_id, client_message_id,
                                     flagged, moderation_score, moderation_reasons)
          values (${input.roomId}, ${input.userId}, ${input.content}, ${input.messageType}, ${input.metadata},
                  ${input.replyToId}, ${input.clientMessageId}, ${input.flagged}, ${input.score},
                  ${tx.array([...input.reasons])}::text[])
          on conflict (room_id, user_id, client_message_id) where client_message_id is not null do nothing
          returning id`;
        if (!inserted) return null;
        if (!input.flagged) {
          await tx`update chat_rooms set last_message_id = ${inserted.id} where id = ${input.roomId}`;
        }
        return getMessage(tx, inserted.id);
      });
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
