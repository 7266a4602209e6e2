/**
 * The worker role on real parts: embedded PostgreSQL (tracks and the job queue), the file
 * BlobStorage, the in-process bus, the system ffmpeg, and the uploads module's track records
 * answering the worker on that bus over the same database (the control plane's own responder,
 * without the rest of the control plane).
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { serveTrackRecords } from '../app/testing/index.js';
import {
  enqueueTranscode,
  TRANSCODE_QUEUE,
  type TrackProgressEvent,
  trackProgressSubject,
} from '../common/contracts/index.js';
import { createLogger, loadConfig } from '../common/index.js';
import { FsBlobStorage, MemoryEventBus, PgJobQueue, type Subscription } from '../common/ports/index.js';
import { createTestDatabase, type TestDatabase } from '../common/testing/index.js';
import { startTranscodeWorker, startWorkers, type TranscodeWorker } from './index.js';
import { listFiles, makeAudio } from './test-audio.js';

const log = createLogger({ level: 'silent', name: 'transcode-test' });

let db: TestDatabase;
let root: string;
let blobRoot: string;
let tempDir: string;
let blobs: FsBlobStorage;
let bus: MemoryEventBus;
let jobs: PgJobQueue;
let records: Subscription;
let ownerId: number;
const running: TranscodeWorker[] = [];

beforeAll(async () => {
  db = await createTestDatabase('embedded');
  root = await mkdtemp(path.join(tmpdir(), 'veza-worker-test-'));
  blobRoot = path.join(root, 'blobs');
  tempDir = path.join(root, 'tmp');
  await mkdir(tempDir);
  blobs = new FsBlobStorage({ root: blobRoot, baseUrl: 'http://veza.test' });
  bus = new MemoryEventBus({ log });
  jobs = new PgJobQueue(db.sql, { leaseMs: 5_000, pollMs: 200, log });
  records = serveTrackRecords({ sql: db.sql, bus });
  const [user] = await db.sql<{ id: number }[]>`
    insert into users (email, email_normalized, username, username_normalized, password_hash, roles)
    values ('dj@veza.test', 'dj@veza.test', 'dj', 'dj', 'x', array['broadcaster'])
    returning id`;
  ownerId = user?.id ?? 0;
});

afterEach(async () => {
  for (const worker of running.splice(0)) await worker.close();
});

afterAll(async () => {
  records?.unsubscribe();
  await jobs?.close();
  await bus?.close();
  await db?.drop();
  await rm(root, { recursive: true, force: true });
});

function worker(options: { shutdownGraceMs?: number; maxDurationS?: number; maxDeliveries?: number } = {}) {
  const started = startTranscodeWorker({
    jobs,
    blobs,
    bus,
    log,
    concurrency: 2,
    maxDurationS: options.maxDurationS ?? 60,
    maxDeliveries: options.maxDeliveries ?? 3,
    backoffMs: [0],
    shutdownGraceMs: options.shutdownGraceMs ?? 10_000,
    tempDir,
    progressIntervalMs: 0,
  });
  running.push(started);
  return started;
}

/** Inserts the track row and stores its source, as the upload path does. */
async function uploadTrack(
  file: string | null,
  title = 'A track',
): Promise<{ trackId: number; sourceKey: string }> {
  const [track] = await db.sql<{ id: number }[]>`
    insert into tracks (owner_id, title, status) values (${ownerId}, ${title}, 'uploaded') returning id`;
  const trackId = track?.id ?? 0;
  const sourceKey = `uploads/${trackId}/source`;
  if (file) await blobs.put(sourceKey, await readFile(file), 'application/octet-stream');
  await db.sql`update tracks set source_key = ${sourceKey} where id = ${trackId}`;
  return { trackId, sourceKey };
}

/** Collects the track's progress events; `until` resolves on the first event matching. */
function watch(trackId: number) {
  const events: TrackProgressEvent[] = [];
  const waiters: Array<{ test: (event: TrackProgressEvent) => boolean; resolve: () => void }> = [];
  const subscription = bus.subscribe(trackProgressSubject(trackId), (payload) => {
    const event = payload as TrackProgressEvent;
    events.push(event);
    for (const waiter of waiters) if (waiter.test(event)) waiter.resolve();
  });
  return {
    events,
    until(test: (event: TrackProgressEvent) => boolean): Promise<void> {
      if (events.some(test)) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ test, resolve }));
    },
    stop: () => subscription.unsubscribe(),
  };
}

interface TrackRow {
  status: string;
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
  input_lufs: number | null;
  renditions: Array<{ format: string; codec: string; bitrate: number; key: string; url: string }>;
  waveform_key: string | null;
  cover_key: string | null;
  output_version: string | null;
}

async function trackRow(trackId: number): Promise<TrackRow> {
  const [row] = await db.sql<TrackRow[]>`select * from tracks where id = ${trackId}`;
  if (!row) throw new Error(`track ${trackId} is gone`);
  return row;
}

async function jobRow(trackId: number) {
  const [row] = await db.sql<{ status: string; attempts: number }[]>`
    select status, attempts from jobs where queue = ${TRANSCODE_QUEUE} and payload->>'trackId' = ${String(trackId)}`;
  return row;
}

describe('the transcode worker', () => {
  it('turns an upload into a ready track through startWorkers, reporting progress on the bus', async () => {
    const file = await makeAudio(path.join(root, 'song.mp3'), 'mp3', 'anoisesrc=d=4:c=pink:a=0.4');
    const { trackId, sourceKey } = await uploadTrack(file);
    const progress = watch(trackId);
    const config = loadConfig({ WORKER_CONCURRENCY: '2', VEZA_DATA_DIR: root });
    const workers = await startWorkers({ config, ports: { jobs, blobs, bus }, log });
    running.push(workers);
    expect(await enqueueTranscode(jobs, { trackId, sourceKey })).toMatchObject({ duplicate: false });
    // The same upload request retried: still one job.
    expect(await enqueueTranscode(jobs, { trackId, sourceKey })).toMatchObject({ duplicate: true });

    await progress.until((event) => event.status === 'ready');
    const row = await trackRow(trackId);
    expect(row).toMatchObject({
      status: 'ready',
      progress: 100,
      failure_reason: null,
      source_key: sourceKey,
      codec: 'mp3',
      sample_rate: 44_100,
      channels: 2,
    });
    expect(row.file_format).toBe('mp3');
    expect(row.duration_s).toBeCloseTo(4, 1);
    expect(row.bitrate).toBeGreaterThan(100_000);
    expect(row.input_lufs).toBeLessThan(-14);
    expect(row.source_checksum).toMatch(/^[0-9a-f]{64}$/);
    expect(row.output_version).toBe(row.source_checksum?.slice(0, 16));
    const prefix = `tracks/${trackId}/${row.output_version}`;
    expect(row.renditions).toEqual([
      {
        format: 'opus',
        codec: 'opus',
        bitrate: 96_000,
        key: `${prefix}/opus/96k.opus`,
        url: `http://veza.test/media/${prefix}/opus/96k.opus`,
      },
      {
        format: 'aac',
        codec: 'aac',
        bitrate: 128_000,
        key: `${prefix}/aac/128k.m4a`,
        url: `http://veza.test/media/${prefix}/aac/128k.m4a`,
      },
      {
        format: 'hls',
        codec: 'aac',
        bitrate: 128_000,
        key: `${prefix}/hls/index.m3u8`,
        url: `http://veza.test/media/${prefix}/hls/index.m3u8`,
      },
    ]);
    expect(row.waveform_key).toBe(`${prefix}/waveform.json`);
    for (const rendition of row.renditions) expect(await blobs.stat(rendition.key)).not.toBeNull();

    const percents = progress.events.map((event) => event.progress);
    expect(progress.events[0]).toMatchObject({ trackId, ownerId, status: 'processing', progress: 0 });
    expect([...percents].sort((a, b) => a - b)).toEqual(percents);
    expect(progress.events.filter((event) => event.status === 'ready')).toHaveLength(1);
    // The ready event goes out just before the handler returns and the job is acked.
    await vi.waitFor(async () => expect(await jobRow(trackId)).toEqual({ status: 'done', attempts: 1 }));
    expect(await listFiles(tempDir)).toEqual([]);
    progress.stop();
  });

  it('fails a bad upload with a clear reason, deletes its source and does not retry', async () => {
    const file = path.join(root, 'lyrics.mp3');
    await writeFile(file, 'la la la\n'.repeat(100));
    const { trackId, sourceKey } = await uploadTrack(file);
    const progress = watch(trackId);
    worker();
    await enqueueTranscode(jobs, { trackId, sourceKey });
    await progress.until((event) => event.status === 'failed');

    const row = await trackRow(trackId);
    expect(row.status).toBe('failed');
    expect(row.failure_reason).toBe('the file is not a recognised audio format (it may be corrupt)');
    expect(row.source_key).toBeNull();
    expect(progress.events.at(-1)).toMatchObject({ status: 'failed', failureReason: row.failure_reason });
    expect(await listFiles(path.join(blobRoot, 'uploads', String(trackId)))).toEqual([]);
    expect(await listFiles(path.join(blobRoot, 'tracks', String(trackId)))).toEqual([]);
    await vi.waitFor(async () => expect(await jobRow(trackId)).toEqual({ status: 'done', attempts: 1 }));
    expect(await jobs.deadLetters(TRANSCODE_QUEUE)).toEqual([]);
    progress.stop();
  });

  it('fails a track longer than the limit', async () => {
    const file = await makeAudio(path.join(root, 'long.wav'), 'wav', 'sine=d=5');
    const { trackId, sourceKey } = await uploadTrack(file);
    const progress = watch(trackId);
    worker({ maxDurationS: 4 });
    await enqueueTranscode(jobs, { trackId, sourceKey });
    await progress.until((event) => event.status === 'failed');
    expect((await trackRow(trackId)).failure_reason).toBe('the audio is 5 s long; the limit is 4 s');
    progress.stop();
  });

  it('redelivers the job of a worker stopped mid-job, and the track completes exactly once', async () => {
    const file = await makeAudio(path.join(root, 'long-enough.flac'), 'flac', 'anoisesrc=d=20:c=pink:a=0.3');
    const { trackId, sourceKey } = await uploadTrack(file);
    const progress = watch(trackId);
    const first = worker({ shutdownGraceMs: 0 });
    await enqueueTranscode(jobs, { trackId, sourceKey });

    // Stop (without waiting for the job) while ffmpeg measures loudness.
    await progress.until((event) => event.stage === 'loudness');
    await first.close();
    expect((await trackRow(trackId)).status).toBe('processing');
    expect(await jobRow(trackId)).toMatchObject({ status: 'queued' });
    const eventsOfFirst = progress.events.length;

    worker();
    await progress.until((event) => event.status === 'ready');
    const row = await trackRow(trackId);
    expect(row.status).toBe('ready');
    await vi.waitFor(async () => expect(await jobRow(trackId)).toEqual({ status: 'done', attempts: 2 }));
    // The second attempt started from 0 again, and only one attempt finished.
    expect(progress.events[eventsOfFirst]).toMatchObject({ status: 'processing', progress: 0 });
    expect(progress.events.filter((event) => event.status === 'ready')).toHaveLength(1);

    // One set of outputs, every one of them referenced: no orphans from the stopped attempt.
    const files = await listFiles(path.join(blobRoot, 'tracks', String(trackId)));
    const version = row.output_version ?? '';
    expect(files.every((f) => f.startsWith(`${version}/`))).toBe(true);
    const playlist = (
      await readFile(path.join(blobRoot, 'tracks', String(trackId), version, 'hls/index.m3u8'))
    )
      .toString()
      .split('\n')
      .filter((line) => line.endsWith('.ts'))
      .map((segment) => `${version}/hls/${segment}`);
    expect(files).toEqual(
      [
        `${version}/opus/96k.opus`,
        `${version}/aac/128k.m4a`,
        `${version}/hls/index.m3u8`,
        `${version}/waveform.json`,
        ...playlist,
      ].sort(),
    );
    expect(await listFiles(tempDir)).toEqual([]);
    progress.stop();
  });

  it('retries a failing job, then fails the track and dead-letters the job', async () => {
    // The row names a source that is not in storage: every attempt fails the same way.
    const { trackId, sourceKey } = await uploadTrack(null);
    const progress = watch(trackId);
    worker({ maxDeliveries: 2 });
    await enqueueTranscode(jobs, { trackId, sourceKey });
    await progress.until((event) => event.status === 'failed');
    await vi.waitFor(async () =>
      expect(await jobRow(trackId)).toMatchObject({ status: 'dead', attempts: 2 }),
    );
    const row = await trackRow(trackId);
    expect(row.failure_reason).toBe('processing failed repeatedly; please upload the file again');
    const letter = (await jobs.deadLetters(TRANSCODE_QUEUE)).find(
      (dead) => (dead.payload as { trackId: number }).trackId === trackId,
    );
    expect(letter?.reason).toMatch(/not found/);
    progress.stop();
  });

  it('does nothing for a job whose track is already ready', async () => {
    const file = await makeAudio(path.join(root, 'again.ogg'), 'ogg', 'sine=f=500:d=2');
    const { trackId, sourceKey } = await uploadTrack(file);
    const progress = watch(trackId);
    worker();
    await enqueueTranscode(jobs, { trackId, sourceKey });
    await progress.until((event) => event.status === 'ready');
    const before = await trackRow(trackId);
    const eventsBefore = progress.events.length;

    // A second job for the same track and source (another id, so not deduplicated).
    await jobs.enqueue(TRANSCODE_QUEUE, { trackId, sourceKey }, { jobId: `again-${trackId}` });
    await vi.waitFor(async () => {
      const [job] = await db.sql<
        { status: string }[]
      >`select status from jobs where job_id = ${`again-${trackId}`}`;
      expect(job?.status).toBe('done');
    });
    expect(await trackRow(trackId)).toEqual(before);
    expect(progress.events).toHaveLength(eventsBefore);
    progress.stop();
  });

  it('keeps the job for redelivery while no control plane answers, and writes nothing meanwhile', async () => {
    const file = await makeAudio(path.join(root, 'waiting.wav'), 'wav', 'sine=f=330:d=2');
    const { trackId, sourceKey } = await uploadTrack(file);
    const before = await trackRow(trackId);
    const progress = watch(trackId);
    records.unsubscribe();
    try {
      worker({ maxDeliveries: 100 });
      await enqueueTranscode(jobs, { trackId, sourceKey });
      // Delivered, refused for want of an answer, and queued again: more than once.
      await vi.waitFor(async () => expect((await jobRow(trackId))?.attempts).toBeGreaterThanOrEqual(2), {
        timeout: 15_000,
      });
      expect(await jobRow(trackId)).toMatchObject({ status: expect.stringMatching(/^(queued|running)$/) });
      expect(await trackRow(trackId)).toEqual(before);
      expect(progress.events).toEqual([]);
    } finally {
      records = serveTrackRecords({ sql: db.sql, bus });
    }
    await progress.until((event) => event.status === 'ready');
    expect((await trackRow(trackId)).status).toBe('ready');
    await vi.waitFor(async () => expect((await jobRow(trackId))?.status).toBe('done'));
    expect(progress.events.filter((event) => event.status === 'ready')).toHaveLength(1);
    progress.stop();
  });

  it('dead-letters a malformed job at once', async () => {
    worker();
    await jobs.enqueue(TRANSCODE_QUEUE, { trackId: 'seven' }, { jobId: 'malformed-1' });
    await vi.waitFor(async () =>
      expect(
        (await jobs.deadLetters(TRANSCODE_QUEUE)).find((dead) => dead.jobId === 'malformed-1'),
      ).toMatchObject({
        attempts: 1,
        reason: expect.stringMatching(/^payload\.trackId: /),
      }),
    );
  });
});
