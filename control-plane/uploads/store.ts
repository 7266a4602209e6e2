/**
 * PostgreSQL access for uploads, the only code that touches their tables: the track rows the
 * upload path writes and the transcode worker records its outcome in (through the uploads
 * module's responder, see track-records.ts), their upload sessions while bytes arrive, and the
 * quota arithmetic. Reads join the session so one row says both what the track is and how far
 * its upload got.
 */

import { NotFoundError, type TrackReady, type TrackToProcess } from '../../common/contracts/index.js';
import type { Sql, TransactionSql } from '../../common/db/index.js';
import { lockUser } from '../auth/index.js';

export type UploadProtocol = 'tus' | 'multipart' | 'grpc';

export interface StoredRendition {
  format: string;
  codec: string;
  bitrate: number;
  key: string;
  url?: string;
}

export interface TrackRow {
  id: number;
  owner_id: number;
  title: string;
  description: string;
  genre: string;
  status: 'uploaded' | 'processing' | 'ready' | 'failed';
  progress: number;
  failure_reason: string | null;
  source_key: string | null;
  source_checksum: string | null;
  source_size: number | null;
  file_format: string | null;
  duration_s: number | null;
  codec: string | null;
  bitrate: number | null;
  sample_rate: number | null;
  channels: number | null;
  renditions: StoredRendition[];
  waveform_key: string | null;
  cover_key: string | null;
  is_public: boolean;
  created_at: Date;
  updated_at: Date;
  /** Present while the upload is in progress (the session row exists). */
  uploading: boolean;
  upload_length: number | null;
  bytes_received: number | null;
  upload_checksum: string | null;
  upload_filename: string | null;
  upload_protocol: UploadProtocol | null;
  upload_expires_at: Date | null;
}

interface NewUpload {
  ownerId: number;
  title: string;
  description: string;
  genre: string;
  isPublic: boolean;
  fileFormat: string | null;
  protocol: UploadProtocol;
  uploadLength: number | null;
  checksum: string | null;
  filename: string | null;
  nodeId: string;
  expiresAt: Date;
}

export interface QuotaUsage {
  usedBytes: number;
  quotaBytes: number;
}

type Db = Sql | TransactionSql;

async function selectTrack(db: Db, id: number): Promise<TrackRow | null> {
  const [row] = await db<TrackRow[]>`
    select t.*, s.track_id is not null as uploading, s.upload_length, s.bytes_received,
      s.checksum as upload_checksum, s.filename as upload_filename, s.protocol as upload_protocol,
      s.expires_at as upload_expires_at
    from tracks t left join upload_sessions s on s.track_id = t.id
    where t.id = ${id}`;
  return row ?? null;
}

/**
 * Bytes a user's uploads hold or have reserved: the sources of their tracks, plus each
 * upload in progress at its declared length (or what it received, when it declared none).
 */
async function quotaUsage(
  db: Db,
  ownerId: number,
  defaultQuota: number,
  excludeTrackId = 0,
): Promise<QuotaUsage> {
  const [row] = await db<{ used: number; quota: number | null }[]>`
    select
      (select coalesce(sum(source_size), 0) from tracks
        where owner_id = ${ownerId} and source_key is not null)::bigint
      + (select coalesce(sum(coalesce(upload_length, bytes_received)), 0) from upload_sessions
        where owner_id = ${ownerId} and track_id <> ${excludeTrackId})::bigint as used,
      (select quota_bytes from upload_quotas where user_id = ${ownerId}) as quota`;
  return { usedBytes: Number(row?.used ?? 0), quotaBytes: row?.quota ?? defaultQuota };
}

export function createUploadStore(sql: Sql) {
  return {
    get: (id: number): Promise<TrackRow | null> => selectTrack(sql, id),

    /** Newest first. */
    async listOwned(ownerId: number, limit: number, beforeId: number): Promise<TrackRow[]> {
      return sql<TrackRow[]>`
        select t.*, s.track_id is not null as uploading, s.upload_length, s.bytes_received,
          s.checksum as upload_checksum, s.filename as upload_filename, s.protocol as upload_protocol,
          s.expires_at as upload_expires_at
        from tracks t left join upload_sessions s on s.track_id = t.id
        where t.owner_id = ${ownerId} and (${beforeId} = 0 or t.id < ${beforeId})
        order by t.id desc
        limit ${limit}`;
    },

    quotaUsage: (ownerId: number, defaultQuota: number, excludeTrackId = 0) =>
      quotaUsage(sql, ownerId, defaultQuota, excludeTrackId),

    /**
     * Creates the track and its upload session. `checkQuota` runs under the owner's row
     * lock, so two uploads started at once cannot both fit in the last free bytes.
     */
    async create(
      input: NewUpload,
      checkQuota: (usage: QuotaUsage) => void,
      defaultQuota: number,
    ): Promise<TrackRow> {
      return sql.begin(async (tx) => {
        if (!(await lockUser(tx, input.ownerId))) throw new NotFoundError(`user ${input.ownerId} not found`);
        checkQuota(await quotaUsage(tx, input.ownerId, defaultQuota));
        const [track] = await tx<{ id: number }[]>`
          insert into tracks (owner_id, title, description, genre, status, file_format, is_public)
          values (${input.ownerId}, ${input.title}, ${input.description}, ${input.genre}, 'uploaded',
            ${input.fileFormat}, ${input.isPublic})
          returning id`;
        if (!track) throw new Error('track insert returned no row');
        await tx`
          insert into upload_sessions (track_id, owner_id, protocol, upload_length, checksum, filename, node_id, expires_at)
          values (${track.id}, ${input.ownerId}, ${input.protocol}, ${input.uploadLength}, ${input.checksum},
            ${input.filename}, ${input.nodeId}, ${input.expiresAt})`;
        const row = await selectTrack(tx, track.id);
        if (!row) throw new Error(`track ${track.id} vanished in its own transaction`);
        return row;
      });
    },

    // Staged parts (staging.ts): one blob per request, committed with the offset.

    /** A request starts writing a part at `start`; it counts once committed. */
    async addPart(trackId: number, key: string, start: number): Promise<void> {
      await sql`insert into upload_parts (part_key, track_id, start_offset) values (${key}, ${trackId}, ${start})`;
    },

    /**
     * Records a part's bytes and moves the upload's offset from `from` to `to` in one
     * transaction; false when the upload moved on meanwhile (cancelled, expired, or another
     * request committed first) or the part was swept.
     */
    async commitPart(
      trackId: number,
      key: string,
      from: number,
      to: number,
      expiresAt: Date,
    ): Promise<boolean> {
      const moved = Symbol('moved on');
      try {
        return await sql.begin(async (tx) => {
          const session = await tx`
            update upload_sessions set bytes_received = ${to}, updated_at = now(), expires_at = ${expiresAt}
            where track_id = ${trackId} and bytes_received = ${from}
            returning 1`;
          if (session.length === 0) return false;
          const part = await tx`
            update upload_parts set length = ${to - from}
            where part_key = ${key} and track_id = ${trackId} and start_offset = ${from} and length is null
            returning 1`;
          if (part.length === 0) throw moved;
          return true;
        });
      } catch (error) {
        if (error === moved) return false;
        throw error;
      }
    },

    /** The committed parts of an upload, in file order. */
    async committedParts(trackId: number): Promise<{ key: string; start: number; length: number }[]> {
      const rows = await sql<{ part_key: string; start_offset: string; length: string }[]>`
        select part_key, start_offset::text, length::text from upload_parts
        where track_id = ${trackId} and length is not null
        order by start_offset`;
      return rows.map((row) => ({
        key: row.part_key,
        start: Number(row.start_offset),
        length: Number(row.length),
      }));
    },

    async partKeys(trackId: number): Promise<string[]> {
      const rows = await sql<{ part_key: string }[]>`
        select part_key from upload_parts where track_id = ${trackId}`;
      return rows.map((row) => row.part_key);
    },

    /** Forgets parts whose blobs are deleted. */
    async dropParts(keys: readonly string[]): Promise<void> {
      if (keys.length === 0) return;
      await sql`delete from upload_parts where part_key = any(${keys as string[]}::text[])`;
    },

    /**
     * Parts nothing will read: their upload ended (finished, refused, cancelled, expired), or
     * their request has been writing since before `pendingBefore` (its control plane died).
     */
    async orphanParts(pendingBefore: Date, limit = 1000): Promise<string[]> {
      const rows = await sql<{ part_key: string }[]>`
        select p.part_key from upload_parts p
        where not exists (select 1 from upload_sessions s where s.track_id = p.track_id)
          or (p.length is null and p.created_at < ${pendingBefore})
        limit ${limit}`;
      return rows.map((row) => row.part_key);
    },

    /** Takes the lease to finish an upload whose `length` bytes are all committed; false when another holds it. */
    async claimFinish(trackId: number, length: number, until: Date): Promise<boolean> {
      const rows = await sql`
        update upload_sessions set finishing_until = ${until}
        where track_id = ${trackId} and bytes_received = ${length}
          and (finishing_until is null or finishing_until < now())
        returning 1`;
      return rows.length > 0;
    },

    async releaseFinish(trackId: number): Promise<void> {
      await sql`update upload_sessions set finishing_until = null where track_id = ${trackId}`;
    },

    /** The bytes are stored: the track points at its source and the session ends. False when the session was gone. */
    async complete(
      trackId: number,
      source: { key: string; checksum: string; size: number },
    ): Promise<boolean> {
      return sql.begin(async (tx) => {
        const ended = await tx`delete from upload_sessions where track_id = ${trackId} returning 1`;
        if (ended.length === 0) return false;
        await tx`
          update tracks set source_key = ${source.key}, source_checksum = ${source.checksum},
            source_size = ${source.size}, status = 'uploaded', progress = 0, failure_reason = null, updated_at = now()
          where id = ${trackId}`;
        return true;
      });
    },

    /** The upload was refused after its track existed: the session ends and the track fails with the reason. */
    async fail(trackId: number, reason: string): Promise<void> {
      await sql.begin(async (tx) => {
        await tx`delete from upload_sessions where track_id = ${trackId}`;
        await tx`
          update tracks set status = 'failed', failure_reason = ${reason}, source_key = null, updated_at = now()
          where id = ${trackId} and status <> 'ready'`;
      });
    },

    /** Cancelled or expired before completion: no track remains. Returns whether it existed. */
    async discard(trackId: number): Promise<boolean> {
      return sql.begin(async (tx) => {
        const ended = await tx`delete from upload_sessions where track_id = ${trackId} returning 1`;
        if (ended.length === 0) return false;
        await tx`delete from tracks where id = ${trackId} and source_key is null`;
        return true;
      });
    },

    async expired(now: Date): Promise<number[]> {
      const rows = await sql<{ track_id: number }[]>`
        select track_id from upload_sessions where expires_at < ${now} order by track_id`;
      return rows.map((row) => row.track_id);
    },

    /** Uploads with every declared byte received, untouched since `before`: their finishing failed. */
    async stalled(before: Date): Promise<{ trackId: number; ownerId: number; length: number }[]> {
      const rows = await sql<{ track_id: number; owner_id: number; upload_length: number }[]>`
        select track_id, owner_id, upload_length from upload_sessions
        where upload_length = bytes_received and updated_at < ${before}
          and (finishing_until is null or finishing_until < now())
        order by track_id`;
      return rows.map((row) => ({ trackId: row.track_id, ownerId: row.owner_id, length: row.upload_length }));
    },

    async titleOf(trackId: number): Promise<string | null> {
      const [row] = await sql<{ title: string }[]>`select title from tracks where id = ${trackId}`;
      return row?.title ?? null;
    },

    // What the transcode worker reads and records.

    /** What becomes of a transcode job of `sourceKey`: only a track still pointing at it, and not ready yet, is processed. */
    async trackToProcess(trackId: number, sourceKey: string): Promise<TrackToProcess> {
      const [row] = await sql<
        { owner_id: number; status: string; source_key: string | null; source_checksum: string | null }[]
      >`select owner_id, status, source_key, source_checksum from tracks where id = ${trackId}`;
      if (!row) return { state: 'missing' };
      if (row.source_key !== sourceKey) return { state: 'other-source' };
      if (row.status === 'ready') return { state: 'ready' };
      return { state: 'to-process', ownerId: row.owner_id, sourceChecksum: row.source_checksum };
    },

    async markProcessing(trackId: number): Promise<void> {
      await sql`
        update tracks set status = 'processing', progress = 0, failure_reason = null, updated_at = now()
        where id = ${trackId} and status <> 'ready'`;
    },

    async recordProgress(trackId: number, percent: number): Promise<void> {
      await sql`
        update tracks set progress = ${percent}, updated_at = now()
        where id = ${trackId} and status = 'processing'`;
    },

    /** One statement, so a track is never half ready; only a track still processing takes it. */
    async recordReady(ready: TrackReady): Promise<'recorded' | 'changed' | 'missing'> {
      const { metadata } = ready;
      const rows = await sql`
        update tracks set
          status = 'ready',
          progress = 100,
          failure_reason = null,
          file_format = ${metadata.formatName},
          duration_s = ${metadata.durationS},
          codec = ${metadata.codec},
          bitrate = ${metadata.bitrate},
          sample_rate = ${metadata.sampleRate},
          channels = ${metadata.channels},
          input_lufs = ${ready.inputLufs},
          renditions = ${sql.json(ready.renditions)},
          waveform_key = ${ready.waveformKey},
          cover_key = ${ready.coverKey},
          output_version = ${ready.version},
          source_checksum = coalesce(source_checksum, ${ready.source.sha256}),
          source_size = coalesce(source_size, ${ready.source.size}),
          updated_at = now()
        where id = ${ready.trackId} and status = 'processing'
        returning id`;
      if (rows.length > 0) return 'recorded';
      const [still] = await sql`select 1 from tracks where id = ${ready.trackId}`;
      return still ? 'changed' : 'missing';
    },

    /** Fails the track unless it is ready; with `dropSource` it stops pointing at its source. */
    async recordFailed(trackId: number, reason: string, dropSource: boolean): Promise<void> {
      await sql`
        update tracks set
          status = 'failed',
          failure_reason = ${reason},
          source_key = case when ${dropSource} then null else source_key end,
          updated_at = now()
        where id = ${trackId} and status <> 'ready'`;
    },
  };
}

export type UploadStore = ReturnType<typeof createUploadStore>;
