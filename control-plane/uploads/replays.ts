/**
 * Replay tracks: a recorded stream's audio as a track of its broadcaster, linked to the stream
 * (tracks.stream_id) and private until published. The uploads module owns the tracks table, so
 * the recordings module creates, changes and deletes replays through these functions, inside its
 * own transactions when it passes one.
 */
import type { Sql, TransactionSql } from '../../common/db/index.js';
import { selectTrack, type TrackRow } from './store.js';

type Db = Sql | TransactionSql;

/** Creates the replay track of a stream that just ended; null when it already has one. */
export async function createReplayTrack(
  db: Db,
  replay: {
    streamId: number;
    ownerId: number;
    title: string;
    description: string;
    genre: string;
    sourceKey: string;
  },
): Promise<TrackRow | null> {
  const [created] = await db<{ id: number }[]>`
    insert into tracks (owner_id, title, description, genre, status, is_public, stream_id, source_key, file_format)
    values (${replay.ownerId}, ${replay.title}, ${replay.description}, ${replay.genre}, 'uploaded', false,
            ${replay.streamId}, ${replay.sourceKey}, 'flac')
    on conflict (stream_id) where stream_id is not null do nothing
    returning id`;
  return created ? selectTrack(db, created.id) : null;
}

export async function replayTrackOf(db: Db, streamId: number): Promise<TrackRow | null> {
  const [row] = await db<{ id: number }[]>`select id from tracks where stream_id = ${streamId}`;
  return row ? selectTrack(db, row.id) : null;
}

/** The joined recording is stored: the replay knows where its timeline starts. */
export async function recordReplaySource(
  db: Db,
  trackId: number,
  joined: { recordingStartedAt: Date; durationS: number },
): Promise<boolean> {
  const rows = await db`
    update tracks set recording_started_at = ${joined.recordingStartedAt}, duration_s = ${joined.durationS},
      updated_at = now()
    where id = ${trackId} and stream_id is not null`;
  return rows.count > 0;
}

/** Publishes, unpublishes or retitles; only the fields given change. */
export async function updateReplayTrack(
  db: Db,
  trackId: number,
  change: { isPublic?: boolean | undefined; title?: string | undefined },
): Promise<TrackRow | null> {
  await db`
    update tracks set
      is_public = coalesce(${change.isPublic ?? null}::boolean, is_public),
      title = coalesce(${change.title ?? null}::text, title),
      updated_at = now()
    where id = ${trackId} and stream_id is not null`;
  return selectTrack(db, trackId);
}

/** Deletes the row; the caller deletes its objects (every key under its prefixes). */
export async function deleteReplayTrack(db: Db, trackId: number): Promise<TrackRow | null> {
  const row = await selectTrack(db, trackId);
  if (!row?.stream_id) return null;
  await db`delete from tracks where id = ${trackId}`;
  return row;
}
