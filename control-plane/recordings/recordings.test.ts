/**
 * Recordings through the control plane and the worker role, on real parts (a control plane on
 * port 0, PostgreSQL, the standalone job queue and bus, the real workers with the system ffmpeg,
 * file and S3 blob storage): StartStream prepares the prefix (or not, when recording is off), the
 * stream's end queues the join, segments become a private replay track that its broadcaster
 * publishes, retitles and deletes (deleting leaves nothing under its prefixes), chat comes back
 * with offsets from the recording's start, and bad inputs get clear answers.
 *
 * The segments are made here with ffmpeg, as a media node uploads them (media-server's
 * recording.test.ts covers the recorder itself; web/e2e/replay.e2e.test.ts the whole path).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { credentials, type Metadata, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  recordingManifestKey,
  recordingPrefix,
  recordingSegmentKey,
  type TrackProgressEvent,
  trackProgressSubject,
} from '../../common/contracts/index.js';
import { createLogger, metricsRegistry } from '../../common/index.js';
import type { JobQueue } from '../../common/ports/index.js';
import { startS3TestServer } from '../../common/testing/index.js';
import { ChatServiceClient, JoinRoomRequest, SendMessageRequest } from '../../proto/gen/veza/chat/chat.js';
import {
  DeleteReplayRequest,
  GetReplayRequest,
  ListTracksRequest,
  type Replay,
  StartStreamRequest,
  StopStreamRequest,
  type StreamInfo,
  StreamServiceClient,
  UpdateReplayRequest,
} from '../../proto/gen/veza/stream/stream.js';
import { startWorkers, type Workers } from '../../workers/index.js';
import { makeAudio } from '../../workers/test-audio.js';
import {
  authCalls,
  bearer,
  grpcError,
  type Harness,
  STRONG_PASSWORD,
  startHarness,
  unary,
} from '../test-harness.js';
import { beginReplay, startReplaySweep } from './index.js';

const log = createLogger({ level: 'silent', name: 'recordings-test' });

interface Stack {
  h: Harness;
  workers: Workers;
  streams: StreamServiceClient;
  chat: ChatServiceClient;
  api: ReturnType<typeof authCalls>;
  /** Every key the blob store holds, for "nothing left" checks. */
  keys(prefix: string): Promise<string[]>;
  close(): Promise<void>;
}

interface Account {
  userId: number;
  md: Metadata;
}

let seq = 0;
let work: string;
let files: Stack;
const closers: (() => Promise<void>)[] = [];

async function stack(env: Record<string, string> = {}): Promise<Stack> {
  // The tests run the replay sweep themselves, when they mean to.
  const h = await startHarness({
    RECORDING_SETTLE_S: '2',
    WORKER_CONCURRENCY: '2',
    RECORDING_SWEEP_INTERVAL_S: '0',
    ...env,
  });
  const workers = await startWorkers({ config: h.config, ports: h.ports, log });
  const streams = new StreamServiceClient(h.address, credentials.createInsecure());
  const chat = new ChatServiceClient(h.address, credentials.createInsecure());
  return {
    h,
    workers,
    streams,
    chat,
    api: authCalls(h.auth),
    keys: async (prefix) => (await h.ports.blobs.list(prefix)).map((blob) => blob.key),
    async close() {
      streams.close();
      chat.close();
      await workers.close();
      await h.close();
    },
  };
}

async function account(s: Stack, prefix: string): Promise<Account> {
  seq += 1;
  const email = `${prefix}${seq}@example.com`;
  const registered = await s.api.register({ email, username: `${prefix}_${seq}`, password: STRONG_PASSWORD });
  const { accessToken } = await s.api.authenticate({ email, password: STRONG_PASSWORD });
  return { userId: registered.userInfo?.userId ?? 0, md: bearer(accessToken) };
}

const start = (s: Stack, md: Metadata, record?: boolean) =>
  unary(
    s.streams.startStream.bind(s.streams),
    StartStreamRequest.fromPartial({
      title: 'Evening set',
      isPublic: true,
      ...(record === undefined ? {} : { record }),
    }),
    md,
  ).then((response) => response.stream as StreamInfo);

const stop = (s: Stack, md: Metadata, streamId: number) =>
  unary(s.streams.stopStream.bind(s.streams), StopStreamRequest.fromPartial({ streamId }), md);

const getReplay = (s: Stack, md: Metadata, streamId: number) =>
  unary(s.streams.getReplay.bind(s.streams), GetReplayRequest.fromPartial({ streamId }), md).then(
    (response) => response.replay as Replay,
  );

/** Stores a tone segment as a media node does: `seconds` long, starting at `startMs` on the wall clock. */
async function segment(s: Stack, streamId: number, startMs: number, seconds: number): Promise<void> {
  const file = await makeAudio(
    path.join(work, `seg-${streamId}-${startMs}.ogg`),
    'opus',
    `sine=f=440:d=${seconds}`,
    {
      sampleRate: 48_000,
    },
  );
  const key = recordingSegmentKey(streamId, { startMs, durationMs: seconds * 1000, writer: 'test-node.1' });
  await s.h.ports.blobs.put(key, await readFile(file), 'audio/ogg');
}

/** Resolves when the track's processing finishes (ready or failed); subscribe before acting. */
function finished(s: Stack, trackId: number): Promise<TrackProgressEvent> {
  return new Promise((resolve) => {
    const subscription = s.h.ports.bus.subscribe(trackProgressSubject(trackId), (payload) => {
      const event = payload as TrackProgressEvent;
      if (event.status === 'processing') return;
      subscription.unsubscribe();
      resolve(event);
    });
  });
}

/** Polls until `check` holds (the worker's job runs on its own time). */
async function until<T>(
  check: () => Promise<T | undefined | false>,
  what: string,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const recordingStatusOf = async (s: Stack, streamId: number) =>
  (
    await s.h.sql<{ recording_status: string }[]>`select recording_status from streams where id = ${streamId}`
  )[0]?.recording_status;

/** The replay track of a stream once the worker made it ready. */
async function readyReplayTrack(s: Stack, streamId: number): Promise<{ id: number; duration_s: number }> {
  return until(
    async () => {
      const [track] = await s.h.sql<{ id: number; status: string; duration_s: number }[]>`
      select id, status, duration_s from tracks where stream_id = ${streamId}`;
      if (track?.status === 'failed') throw new Error(`the replay of stream ${streamId} failed`);
      return track?.status === 'ready' ? track : undefined;
    },
    `the replay of stream ${streamId} to be ready`,
    60_000,
  );
}

/** Ends a live stream as StopStream does, but no `stream.ended` is ever published (it was lost). */
const endSilently = (s: Stack, streamId: number) =>
  s.h.sql`update streams set status = 'ended', ended_at = now(), end_reason = 'stopped', listener_count = 0
          where id = ${streamId}`;

const requeues = async (reason: string): Promise<number> =>
  (await metricsRegistry().getSingleMetric('veza_recording_requeues_total')?.get())?.values.find(
    (value) => value.labels.reason === reason,
  )?.value ?? 0;

/** Records a stream of two tone segments with a 1 s gap and two chat messages; returns it ready. */
async function recordedStream(s: Stack, dj: Account) {
  const stream = await start(s, dj.md);
  const t0 = Date.now();
  await segment(s, stream.streamId, t0, 2);
  await segment(s, stream.streamId, t0 + 3000, 1);
  const room = stream.chatRoomId;
  await unary(s.chat.joinRoom.bind(s.chat), JoinRoomRequest.fromPartial({ roomId: room }), dj.md);
  const sent = await unary(
    s.chat.sendMessage.bind(s.chat),
    SendMessageRequest.fromPartial({ roomId: room, content: 'hello replay', messageType: 'text' }),
    dj.md,
  );
  // No replay while live.
  expect(await s.h.sql`select id from tracks where stream_id = ${stream.streamId}`).toHaveLength(0);
  await stop(s, dj.md, stream.streamId);
  const track = await until(
    async () =>
      (await s.h.sql<{ id: number }[]>`select id from tracks where stream_id = ${stream.streamId}`)[0],
    'the replay track',
  );
  const done = finished(s, track.id);
  const outcome = await Promise.race([
    done,
    until(
      async () =>
        (await s.h.sql<{ status: string }[]>`select status from tracks where id = ${track.id}`)[0]?.status ===
        'ready',
      'the replay to be ready',
      60_000,
    ).then(() => ({ status: 'ready' }) as TrackProgressEvent),
  ]);
  expect(outcome.status).toBe('ready');
  return { stream, trackId: track.id, t0, message: sent.message };
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'veza-recordings-test-'));
  files = await stack();
  closers.push(() => files.close());
});

afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await rm(work, { recursive: true, force: true });
});

describe('recordings', () => {
  it('StartStream prepares the prefix of a recorded stream (the default) and nothing when recording is off', async () => {
    const dj = await account(files, 'dj');
    const on = await start(files, dj.md);
    expect(on).toMatchObject({ record: true, recordingStatus: 'recording' });
    const manifest = JSON.parse(
      (
        await readFile(path.join(files.h.config.dataDir, 'blobs', recordingManifestKey(on.streamId)))
      ).toString(),
    );
    expect(manifest).toMatchObject({ streamId: on.streamId, ownerId: dj.userId });

    const off = await start(files, dj.md, false);
    expect(off).toMatchObject({ record: false, recordingStatus: 'off' });
    expect(await files.keys(recordingPrefix(off.streamId))).toEqual([]);
    await stop(files, dj.md, off.streamId);
    const refused = await grpcError(getReplay(files, dj.md, off.streamId));
    expect(refused.code).toBe(status.FAILED_PRECONDITION);
    expect(refused.details).toBe(`stream ${off.streamId} was not recorded: its recording was turned off`);
    expect(await files.h.sql`select id from tracks where stream_id = ${off.streamId}`).toHaveLength(0);
  });

  it('joins the segments into a private replay with its chat at offsets; the owner publishes and retitles it', async () => {
    const dj = await account(files, 'dj');
    const fan = await account(files, 'fan');
    const { stream, trackId, t0, message } = await recordedStream(files, dj);

    const replay = await getReplay(files, dj.md, stream.streamId);
    expect(replay.track).toMatchObject({
      trackId,
      status: 'ready',
      isPublic: false,
      streamId: stream.streamId,
    });
    // The 1 s gap stays: 2 s + 1 s of silence + 1 s.
    expect(replay.track?.duration).toBeCloseTo(4, 1);
    expect(replay.recordingStartedAt?.getTime()).toBe(t0);
    expect(replay.messages).toHaveLength(1);
    const sentAt = message?.createdAt?.getTime() ?? 0;
    expect(replay.messages[0]).toMatchObject({
      content: 'hello replay',
      userId: dj.userId,
      offsetMs: sentAt - t0,
    });
    expect((await recordingStatusOf(files, stream.streamId)) ?? '').toBe('ready');
    // A replay is not an upload: "your tracks" lists uploads only.
    const listed = await unary(
      files.streams.listTracks.bind(files.streams),
      ListTracksRequest.fromPartial({}),
      dj.md,
    );
    expect(listed.tracks.map((track) => track.trackId)).not.toContain(trackId);

    // Private until published: another user neither sees nor changes it.
    expect((await grpcError(getReplay(files, fan.md, stream.streamId))).code).toBe(status.NOT_FOUND);
    const publishOthers = unary(
      files.streams.updateReplay.bind(files.streams),
      UpdateReplayRequest.fromPartial({ streamId: stream.streamId, isPublic: true }),
      fan.md,
    );
    expect((await grpcError(publishOthers)).code).toBe(status.NOT_FOUND);

    const published = await unary(
      files.streams.updateReplay.bind(files.streams),
      UpdateReplayRequest.fromPartial({
        streamId: stream.streamId,
        isPublic: true,
        title: 'Evening set (replay)',
      }),
      dj.md,
    );
    expect(published.replay?.track).toMatchObject({ isPublic: true, title: 'Evening set (replay)' });
    expect((await getReplay(files, fan.md, stream.streamId)).track?.title).toBe('Evening set (replay)');
    // Visible now, still not theirs to change.
    const unpublishOthers = await grpcError(
      unary(
        files.streams.updateReplay.bind(files.streams),
        UpdateReplayRequest.fromPartial({ streamId: stream.streamId, isPublic: false }),
        fan.md,
      ),
    );
    expect(unpublishOthers.code).toBe(status.PERMISSION_DENIED);
    const empty = await grpcError(
      unary(
        files.streams.updateReplay.bind(files.streams),
        UpdateReplayRequest.fromPartial({ streamId: stream.streamId }),
        dj.md,
      ),
    );
    expect(empty.code).toBe(status.INVALID_ARGUMENT);
  });

  it('a recorded stream that never had audio leaves no replay and nothing under its prefix', async () => {
    const dj = await account(files, 'dj');
    const stream = await start(files, dj.md);
    await stop(files, dj.md, stream.streamId);
    await until(
      async () => (await recordingStatusOf(files, stream.streamId)) === 'no_audio',
      'the no-audio outcome',
    );
    const refused = await grpcError(getReplay(files, dj.md, stream.streamId));
    expect(refused.code).toBe(status.FAILED_PRECONDITION);
    expect(refused.details).toBe(`stream ${stream.streamId} never had audio: nothing was recorded`);
    expect(await files.h.sql`select id from tracks where stream_id = ${stream.streamId}`).toHaveLength(0);
    expect(await files.keys(recordingPrefix(stream.streamId))).toEqual([]);
  });

  it.each(['files', 's3'] as const)(
    'deleting a replay leaves nothing under its prefixes (%s)',
    async (storage) => {
      let s = files;
      if (storage === 's3') {
        const s3 = await startS3TestServer();
        s = await stack(s3.env);
        closers.push(() => s3.close());
        closers.push(() => s.close());
      }
      const dj = await account(s, 'dj');
      const { stream, trackId } = await recordedStream(s, dj);
      expect((await s.keys(recordingPrefix(stream.streamId))).length).toBeGreaterThan(2);
      expect((await s.keys(`tracks/${trackId}/`)).length).toBeGreaterThan(2);

      const other = await account(s, 'other');
      expect(
        (
          await grpcError(
            unary(
              s.streams.deleteReplay.bind(s.streams),
              DeleteReplayRequest.fromPartial({ streamId: stream.streamId }),
              other.md,
            ),
          )
        ).code,
      ).toBe(status.NOT_FOUND);

      await unary(
        s.streams.deleteReplay.bind(s.streams),
        DeleteReplayRequest.fromPartial({ streamId: stream.streamId }),
        dj.md,
      );
      expect(await s.keys(recordingPrefix(stream.streamId))).toEqual([]);
      expect(await s.keys(`tracks/${trackId}/`)).toEqual([]);
      expect(await s.keys(`streams/${stream.streamId}/`)).toEqual([]);
      expect(await s.h.sql`select id from tracks where id = ${trackId}`).toHaveLength(0);
      const gone = await grpcError(getReplay(s, dj.md, stream.streamId));
      expect(gone.code).toBe(status.NOT_FOUND);
      expect(gone.details).toBe(`the replay of stream ${stream.streamId} was deleted`);
    },
  );

  describe('the replay sweep', () => {
    const sweepOf = (s: Stack, graceMs: number) =>
      startReplaySweep(
        { sql: s.h.sql, bus: s.h.ports.bus, blobs: s.h.ports.blobs, jobs: s.h.ports.jobs, log },
        { intervalMs: 0, graceMs },
      );

    it('queues the join of a recorded stream whose stream.ended was never handled, once, after the grace period', async () => {
      const dj = await account(files, 'dj');
      const stream = await start(files, dj.md);
      const t0 = Date.now();
      await segment(files, stream.streamId, t0, 2);
      await endSilently(files, stream.streamId);
      const before = await requeues('event_missed');

      // Within the grace period the stream is left to the event's handler.
      expect(await sweepOf(files, 60_000).runOnce()).toEqual({ eventMissed: 0, jobMissing: 0 });
      expect(await recordingStatusOf(files, stream.streamId)).toBe('recording');

      // Two control planes sweeping at once queue it once.
      const [a, b] = await Promise.all([sweepOf(files, 0).runOnce(), sweepOf(files, 0).runOnce()]);
      expect((a?.eventMissed ?? 0) + (b?.eventMissed ?? 0)).toBe(1);
      expect(await requeues('event_missed')).toBe(before + 1);
      const track = await readyReplayTrack(files, stream.streamId);
      expect(track.duration_s).toBeCloseTo(2, 1);
      expect(await recordingStatusOf(files, stream.streamId)).toBe('ready');

      // Nothing left to sweep.
      expect(await sweepOf(files, 0).runOnce()).toEqual({ eventMissed: 0, jobMissing: 0 });
      expect(await requeues('event_missed')).toBe(before + 1);
    });

    it('queues the join the queue refused after the replay track was created', async () => {
      const dj = await account(files, 'dj');
      const stream = await start(files, dj.md);
      await segment(files, stream.streamId, Date.now(), 1);
      await endSilently(files, stream.streamId);
      const before = await requeues('job_missing');
      // The queue is down when the control plane hears the end: the track exists, the job does not.
      const refusing = {
        enqueue: () => Promise.reject(new Error('job queue unavailable')),
      } as unknown as JobQueue;
      const deps = { sql: files.h.sql, bus: files.h.ports.bus, blobs: files.h.ports.blobs, log };
      await expect(beginReplay({ ...deps, jobs: refusing }, stream.streamId)).rejects.toThrow(
        'job queue unavailable',
      );
      expect(await recordingStatusOf(files, stream.streamId)).toBe('processing');
      expect(await files.h.sql`select id from tracks where stream_id = ${stream.streamId}`).toHaveLength(1);

      expect(await sweepOf(files, 0).runOnce()).toEqual({ eventMissed: 0, jobMissing: 1 });
      expect(await requeues('job_missing')).toBe(before + 1);
      const track = await readyReplayTrack(files, stream.streamId);
      expect(track.duration_s).toBeCloseTo(1, 1);
      expect(await sweepOf(files, 0).runOnce()).toEqual({ eventMissed: 0, jobMissing: 0 });
    });
  });
});
