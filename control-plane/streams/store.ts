/**
 * PostgreSQL access for streams. Every row read carries its owner's username (from the
 * auth module), which a StreamInfo shows.
 */

import { NotFoundError } from '../../common/contracts/index.js';
import type { Sql, TransactionSql } from '../../common/db/index.js';
import { lockUser, usernamesOf } from '../auth/index.js';

type StreamStatus = 'live' | 'ended';

export interface StreamRow {
  id: number;
  owner_id: number;
  owner_username: string;
  title: string;
  description: string;
  genre: string;
  status: StreamStatus;
  is_public: boolean;
  allow_anonymous: boolean;
  chat_room_id: number;
  media_node_id: string | null;
  listener_count: number;
  peak_listeners: number;
  started_at: Date;
  ended_at: Date | null;
  end_reason: string | null;
  record: boolean;
  recording_status: RecordingStatus;
}

export type RecordingStatus =
  | 'off'
  | 'recording'
  | 'processing'
  | 'ready'
  | 'no_audio'
  | 'failed'
  | 'deleted';

interface NewStream {
  ownerId: number;
  title: string;
  description: string;
  genre: string;
  isPublic: boolean;
  allowAnonymous: boolean;
  mediaNodeId: string | null;
  record: boolean;
}

interface StartedStream {
  stream: StreamRow;
  /** The owner's previous live streams, ended with reason "replaced" in the same transaction. */
  replaced: StreamRow[];
}

type Db = Sql | TransactionSql;

/**
 * The chat room every stream gets, opened inside the stream's own transaction so neither
 * exists without the other. The chat module owns rooms and implements this: it depends on
 * streams (a stream's chat closes when it ends), so streams cannot import it.
 */
export interface StreamChatRooms {
  /** Creates the room of a stream about to start; returns the room's id. */
  openForStream(
    tx: TransactionSql,
    room: { name: string; description: string; ownerId: number; isPrivate: boolean },
  ): Promise<number>;
  /** Points the room at its stream, once the stream row exists. */
  linkToStream(tx: TransactionSql, roomId: number, streamId: number): Promise<void>;
}

/** What other modules need to know of a stream (chat: whether it ended; moderation: its room); null when there is no such stream. */
export async function streamStateOf(
  db: Db,
  id: number,
): Promise<{ status: StreamStatus; chatRoomId: number } | null> {
  const [row] = await db<{ status: StreamStatus; chat_room_id: number }[]>`
    select status, chat_room_id from streams where id = ${id}`;
  return row ? { status: row.status, chatRoomId: row.chat_room_id } : null;
}

type StoredStream = Omit<StreamRow, 'owner_username'>;

/** What the recordings module needs of a stream. */
export interface StreamRecording {
  id: number;
  owner_id: number;
  title: string;
  description: string;
  genre: string;
  status: StreamStatus;
  is_public: boolean;
  chat_room_id: number;
  ended_at: Date | null;
  record: boolean;
  recording_status: RecordingStatus;
}

export async function streamRecordingOf(db: Db, id: number): Promise<StreamRecording | null> {
  const [row] = await db<StreamRecording[]>`
    select id, owner_id, title, description, genre, status, is_public, chat_room_id, ended_at, record,
           recording_status
    from streams where id = ${id}`;
  return row ?? null;
}

/**
 * Moves a stream's recording from one of `from` to `to`; null when it was in none of them (another
 * control plane moved it first: each transition happens once).
 */
export async function moveRecordingStatus(
  db: Db,
  id: number,
  from: readonly RecordingStatus[],
  to: RecordingStatus,
): Promise<StreamRecording | null> {
  const [row] = await db<StreamRecording[]>`
    update streams set recording_status = ${to}
    where id = ${id} and recording_status in ${db(from as RecordingStatus[])}
    returning id, owner_id, title, description, genre, status, is_public, chat_room_id, ended_at, record,
              recording_status`;
  return row ?? null;
}

/** The recording's join is in the job queue: the replay sweep leaves the stream alone from now on. */
export async function markRecordingJoinQueued(db: Db, id: number): Promise<void> {
  await db`update streams set recording_join_queued_at = now() where id = ${id} and recording_join_queued_at is null`;
}

/**
 * Recorded streams that ended before `endedBefore` and whose recording nobody took further:
 * still 'recording' (their `stream.ended` was never handled), or 'processing' without their join
 * queued (the queue refused it, or the control plane died before queueing). Oldest first.
 */
export async function unjoinedRecordings(
  db: Db,
  endedBefore: Date,
  limit: number,
): Promise<{ id: number; recording_status: 'recording' | 'processing' }[]> {
  return db<{ id: number; recording_status: 'recording' | 'processing' }[]>`
    select id, recording_status from streams
    where status = 'ended' and record and ended_at < ${endedBefore}
      and (recording_status = 'recording'
           or (recording_status = 'processing' and recording_join_queued_at is null))
    order by ended_at
    limit ${limit}`;
}

/** Adds the owners' usernames; a stream whose owner is gone (deleted meanwhile) is left out. */
async function withOwners(db: Db, rows: readonly StoredStream[]): Promise<StreamRow[]> {
  const usernames = await usernamesOf(
    db,
    rows.map((row) => row.owner_id),
  );
  return rows.flatMap((row) => {
    const username = usernames.get(row.owner_id);
    return username === undefined ? [] : [{ ...row, owner_username: username }];
  });
}

async function selectById(db: Db, id: number): Promise<StreamRow | null> {
  const rows = await db<StoredStream[]>`select * from streams where id = ${id}`;
  const [row] = await withOwners(db, rows);
  return row ?? null;
}

export function createStreamStore(sql: Sql) {
  return {
    get: (id: number): Promise<StreamRow | null> => selectById(sql, id),

    /**
     * Creates the stream and its chat room atomically. A broadcaster has at most one live
     * stream: going live again (a reloaded studio page, a second tab) replaces the previous
     * one, which is what a broadcaster expects, rather than failing until they find and
     * stop a stream they can no longer see.
     */
    async start(
      input: NewStream,
      rooms: StreamChatRooms,
      /** Runs in the transaction once the stream has its id (a failure undoes the start). */
      prepare?: (streamId: number) => Promise<void>,
    ): Promise<StartedStream> {
      return sql.begin(async (tx) => {
        // Serialises concurrent starts by one owner, so the one-live-per-owner index never trips.
        if (!(await lockUser(tx, input.ownerId))) throw new NotFoundError(`user ${input.ownerId} not found`);
        const replacedIds = await tx<{ id: number }[]>`
          update streams
          set status = 'ended', ended_at = now(), end_reason = 'replaced', listener_count = 0
          where owner_id = ${input.ownerId} and status = 'live'
          returning id`;
        const roomId = await rooms.openForStream(tx, {
          name: input.title,
          description: input.description,
          ownerId: input.ownerId,
          isPrivate: !input.isPublic,
        });
        const [created] = await tx<{ id: number }[]>`
          insert into streams (owner_id, title, description, genre, is_public, allow_anonymous, chat_room_id,
                               media_node_id, record, recording_status)
          values (${input.ownerId}, ${input.title}, ${input.description}, ${input.genre}, ${input.isPublic},
                  ${input.allowAnonymous}, ${roomId}, ${input.mediaNodeId}, ${input.record},
                  ${input.record ? 'recording' : 'off'})
          returning id`;
        if (!created) throw new Error('stream insert returned nothing');
        if (prepare) await prepare(created.id);
        await rooms.linkToStream(tx, roomId, created.id);
        const stream = await selectById(tx, created.id);
        if (!stream) throw new Error('created stream vanished');
        const replaced: StreamRow[] = [];
        for (const { id } of replacedIds) {
          const row = await selectById(tx, id);
          if (row) replaced.push(row);
        }
        return { stream, replaced };
      });
    },

    /**
     * Ends a live stream; null when it had already ended (nothing changed), or when `onNode` is
     * given and the stream is hosted elsewhere (another control plane moved it meanwhile).
     */
    async end(id: number, reason: string, onNode?: string): Promise<StreamRow | null> {
      const [ended] = await sql<{ id: number }[]>`
        update streams
        set status = 'ended', ended_at = now(), end_reason = ${reason}, listener_count = 0
        where id = ${id} and status = 'live'
          ${onNode === undefined ? sql`` : sql`and media_node_id = ${onNode}`}
        returning id`;
      return ended ? selectById(sql, ended.id) : null;
    },

    /** How many streams are live and how many listeners they report, for the metrics. */
    async liveTotals(): Promise<{ streams: number; listeners: number }> {
      const [row] = await sql<{ streams: number; listeners: number }[]>`
        select count(*)::int as streams, coalesce(sum(listener_count), 0)::int as listeners
        from streams where status = 'live'`;
      return { streams: row?.streams ?? 0, listeners: row?.listeners ?? 0 };
    },

    /** The live streams hosted on a media node. */
    liveOnNode: async (mediaNodeId: string): Promise<number[]> =>
      (
        await sql<{ id: number }[]>`
          select id from streams where media_node_id = ${mediaNodeId} and status = 'live' order by id`
      ).map((row) => row.id),

    /**
     * Moves a live stream from one media node to another; null when it is no longer live on `from`
     * (ended, or moved by another control plane first: with several, each stream moves once).
     */
    async move(id: number, from: string, to: string): Promise<StreamRow | null> {
      const [moved] = await sql<{ id: number }[]>`
        update streams set media_node_id = ${to}
        where id = ${id} and media_node_id = ${from} and status = 'live'
        returning id`;
      return moved ? selectById(sql, moved.id) : null;
    },

    /**
     * Live streams by id: below `below` newest first (any id when null), or above `above` oldest
     * first. Ids never change, so a listing that pages by them is stable while streams start
     * and end. Public streams only unless `includePrivate`.
     */
    async listLive(options: {
      limit: number;
      includePrivate: boolean;
      below?: number | null;
      above?: number;
    }): Promise<StreamRow[]> {
      const { limit, includePrivate, below, above } = options;
      const rows = await sql<StoredStream[]>`
        select * from streams
        where status = 'live'
          ${includePrivate ? sql`` : sql`and is_public`}
          ${
            above === undefined
              ? sql`${below == null ? sql`` : sql`and id < ${below}`} order by id desc`
              : sql`and id > ${above} order by id asc`
          }
        limit ${limit}`;
      return withOwners(sql, rows);
    },

    /** Sets the current count of a live stream and raises its peak; null when it is not live. */
    async reportListeners(id: number, count: number): Promise<StreamRow | null> {
      const [updated] = await sql<{ id: number }[]>`
        update streams
        set listener_count = ${count}, peak_listeners = greatest(peak_listeners, ${count})
        where id = ${id} and status = 'live'
        returning id`;
      return updated ? selectById(sql, updated.id) : null;
    },
  };
}
