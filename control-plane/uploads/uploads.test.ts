/**
 * Uploads and playback over gRPC on real parts: a control plane on port 0 over a fresh
 * database with the standalone ports (file BlobStorage, PostgreSQL job queue, in-process
 * bus), the real worker role with the system ffmpeg, and the generated StreamService client.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { credentials, type Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  notificationSubject,
  type TrackProgressEvent,
  trackProgressSubject,
} from '../../common/contracts/index.js';
import { createLogger } from '../../common/index.js';
import { startS3TestServer } from '../../common/testing/index.js';
import { AnalyticsServiceClient, GetAnalyticsRequest } from '../../proto/gen/veza/analytics/analytics.js';
import {
  AudioChunk,
  CancelUploadRequest,
  type DeepPartial,
  GetTrackRequest,
  ListTracksRequest,
  StreamAudioRequest,
  StreamServiceClient,
  type Track,
  UploadAudioRequest,
  type UploadAudioResponse,
} from '../../proto/gen/veza/stream/stream.js';
import { startWorkers, type Workers } from '../../workers/index.js';
import { listFiles, makeAudio } from '../../workers/test-audio.js';
import { createAnalytics } from '../analytics/index.js';
import { createNotifier } from '../notifications/index.js';
import {
  authCalls,
  bearer,
  grpcError,
  type Harness,
  metadata,
  STRONG_PASSWORD,
  StreamReader,
  startHarness,
  unary,
} from '../test-harness.js';
import { createUploads, sourceKeyOf } from './index.js';

const MAX_BYTES = 4 * 1024 * 1024;
const log = createLogger({ level: 'silent', name: 'uploads-test' });

let h: Harness;
let workers: Workers;
let client: StreamServiceClient;
let analyticsClient: AnalyticsServiceClient;
let api: ReturnType<typeof authCalls>;
let root: string;
let wav: Buffer;
let wavSha: string;
let seq = 0;

interface Account {
  userId: number;
  md: Metadata;
}

async function account(prefix: string, roles?: string[]): Promise<Account> {
  seq += 1;
  const email = `${prefix}${seq}@example.com`;
  const registered = await api.register({ email, username: `${prefix}_${seq}`, password: STRONG_PASSWORD });
  const userId = registered.userInfo?.userId ?? 0;
  if (roles) await h.sql`update users set roles = ${roles} where id = ${userId}`;
  const { accessToken } = await api.authenticate({ email, password: STRONG_PASSWORD });
  return { userId, md: bearer(accessToken) };
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const field = (error: ServiceError) => error.metadata.get('veza-error-field')[0];
const vezaCode = (error: ServiceError) => error.metadata.get('veza-error-code')[0];

function create(md: Metadata, request: DeepPartial<UploadAudioRequest>, meta?: Record<string, unknown>) {
  return unary(
    client.uploadAudio.bind(client),
    UploadAudioRequest.fromPartial({
      title: 'A track',
      ...request,
      ...(meta ? { metadata: Buffer.from(JSON.stringify(meta)) } : {}),
    }),
    md,
  );
}

/** `bytes` as chunks of `size` bytes for `trackId`, the first one carrying `offset`. */
function chunksOf(trackId: number, bytes: Buffer, offset = 0, size = 64 * 1024): DeepPartial<AudioChunk>[] {
  const chunks: DeepPartial<AudioChunk>[] = [];
  for (let at = 0; at < bytes.length; at += size) {
    chunks.push({ streamId: trackId, chunkIndex: chunks.length, audioData: bytes.subarray(at, at + size) });
  }
  if (chunks.length === 0) chunks.push({ streamId: trackId, chunkIndex: 0, audioData: Buffer.alloc(0) });
  const first = chunks[0];
  if (first) first.offset = offset;
  return chunks;
}

function sendChunks(md: Metadata, chunks: DeepPartial<AudioChunk>[]): Promise<UploadAudioResponse> {
  return new Promise((resolve, reject) => {
    const call = client.uploadAudioChunks(md, { deadline: Date.now() + 20_000 }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
    for (const chunk of chunks) call.write(AudioChunk.fromPartial(chunk));
    call.end();
  });
}

const getTrack = (trackId: number, md: Metadata) =>
  unary(client.getTrack.bind(client), GetTrackRequest.fromPartial({ trackId }), md).then(
    (r) => r.track as Track,
  );

/** Resolves with the first progress event of the track that `match` accepts; subscribe before acting. */
function progressOf(
  trackId: number,
  match: (event: TrackProgressEvent) => boolean,
): Promise<TrackProgressEvent> {
  return new Promise((resolve) => {
    const subscription = h.ports.bus.subscribe(trackProgressSubject(trackId), (payload) => {
      const event = payload as TrackProgressEvent;
      if (!match(event)) return;
      subscription.unsubscribe();
      resolve(event);
    });
  });
}
const finished = (trackId: number) => progressOf(trackId, (event) => event.status !== 'processing');

/** Resolves with the next notification of `type` published for the user; subscribe before acting. */
function notified(userId: number, type: string): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const subscription = h.ports.bus.subscribe(notificationSubject(userId), (payload) => {
      const event = payload as Record<string, unknown>;
      if (event.notification_type !== type) return;
      subscription.unsubscribe();
      resolve(event);
    });
  });
}

/** How many staged parts an upload has; their rows and their blobs (file BlobStorage) must agree. */
async function stagedParts(trackId: number): Promise<number> {
  const rows = await h.sql`select part_key from upload_parts where track_id = ${trackId}`;
  const files = await listFiles(path.join(h.config.dataDir, 'blobs', 'staging', String(trackId)));
  expect(files.map((file) => `staging/${trackId}/${file}`).sort()).toEqual(
    rows.map((row) => String(row.part_key)).sort(),
  );
  return rows.length;
}
const blobFiles = (trackId: number) =>
  Promise.all([
    listFiles(path.join(h.config.dataDir, 'blobs', 'uploads', String(trackId))),
    listFiles(path.join(h.config.dataDir, 'blobs', 'tracks', String(trackId))),
  ]).then(([uploads, tracks]) => [
    ...uploads.map((f) => `uploads/${trackId}/${f}`),
    ...tracks.map((f) => `tracks/${trackId}/${f}`),
  ]);

async function notificationsOf(userId: number) {
  return h.sql<{ notification_type: string; data: { track_id: number; failure_reason?: string } }[]>`
    select notification_type, data from notifications where user_id = ${userId} order by id`;
}

function keyOf(url: string): string {
  return url.replace(/^http:\/\/veza\.test\/media\//, '');
}

beforeAll(async () => {
  h = await startHarness({
    UPLOAD_MAX_BYTES: String(MAX_BYTES),
    UPLOAD_MAX_DURATION_S: '8',
    WORKER_CONCURRENCY: '2',
  });
  api = authCalls(h.auth);
  workers = await startWorkers({
    config: h.config,
    ports: h.ports,
    log,
    maxDurationS: h.config.UPLOAD_MAX_DURATION_S,
  });
  client = new StreamServiceClient(h.address, credentials.createInsecure());
  analyticsClient = new AnalyticsServiceClient(h.address, credentials.createInsecure());
  root = await mkdtemp(path.join(tmpdir(), 'veza-upload-test-'));
  wav = await readFile(await makeAudio(path.join(root, 'tone.wav'), 'wav', 'sine=f=440:d=3'));
  wavSha = sha256(wav);
});

afterAll(async () => {
  client?.close();
  analyticsClient?.close();
  await workers?.close();
  await h?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('UploadAudio + UploadAudioChunks', () => {
  it('uploads in two calls resumed at the offset, then the track is processed, announced and playable', async () => {
    const dj = await account('dj');
    const created = await create(
      dj.md,
      { fileSize: wav.length, fileFormat: 'wav', genre: 'test' },
      { checksum: wavSha },
    );
    const trackId = created.trackId;
    expect(created.track).toMatchObject({
      trackId,
      status: 'uploading',
      bytesReceived: 0,
      uploadLength: wav.length,
    });

    const half = 200_000;
    const first = await sendChunks(dj.md, chunksOf(trackId, wav.subarray(0, half)));
    expect(first.track).toMatchObject({ status: 'uploading', bytesReceived: half, uploadLength: wav.length });
    expect((await getTrack(trackId, dj.md)).bytesReceived).toBe(half);
    expect(await stagedParts(trackId)).toBeGreaterThan(0);

    const done = finished(trackId);
    const announced = notified(dj.userId, 'upload.ready');
    const second = await sendChunks(dj.md, chunksOf(trackId, wav.subarray(half), half));
    expect(['uploaded', 'processing']).toContain(second.track?.status);
    expect(second.track).toMatchObject({ bytesReceived: wav.length, checksum: wavSha });
    expect(await stagedParts(trackId)).toBe(0);
    expect(await done).toMatchObject({ status: 'ready', progress: 100 });

    const track = await getTrack(trackId, dj.md);
    expect(track).toMatchObject({
      status: 'ready',
      progress: 100,
      failureReason: '',
      fileFormat: 'wav',
      isPublic: false,
    });
    expect(track.duration).toBeCloseTo(3, 1);
    expect(track.renditions.map((r) => [r.format, r.codec, r.bitrate])).toEqual([
      ['opus', 'opus', 96_000],
      ['aac', 'aac', 128_000],
      ['hls', 'aac', 128_000],
    ]);
    expect(track.waveformUrl).toMatch(
      /^http:\/\/veza\.test\/media\/tracks\/\d+\/[0-9a-f]{16}\/waveform\.json$/,
    );
    expect(track.hlsUrl).toMatch(/\/hls\/index\.m3u8$/);
    const waveform = JSON.parse((await buffer(await h.ports.blobs.get(keyOf(track.waveformUrl)))).toString());
    expect(waveform).toBeTruthy();

    // Played back as chunks whose bytes are the Opus rendition, in order.
    const reader = new StreamReader<AudioChunk>(
      client.streamAudio(StreamAudioRequest.fromPartial({ trackId, format: 'opus' }), dj.md),
    );
    await reader.finished();
    expect(reader.error).toBeNull();
    const chunks = reader.messages;
    expect(chunks.map((c) => c.chunkIndex)).toEqual(chunks.map((_, i) => i));
    expect(chunks[0]).toMatchObject({ streamId: trackId, sampleRate: 48_000, channels: 2, codec: 'opus' });
    const opus = track.renditions.find((r) => r.format === 'opus');
    expect(Buffer.concat(chunks.map((c) => c.audioData))).toEqual(
      await buffer(await h.ports.blobs.get(keyOf(opus?.url ?? ''))),
    );
    const aac = new StreamReader<AudioChunk>(
      client.streamAudio(StreamAudioRequest.fromPartial({ trackId, format: 'aac', quality: 128 }), dj.md),
    );
    await aac.finished();
    expect(aac.messages[0]?.codec).toBe('aac');
    const hls = new StreamReader<AudioChunk>(
      client.streamAudio(StreamAudioRequest.fromPartial({ trackId, format: 'hls' }), dj.md),
    );
    await hls.finished();
    expect(hls.error?.code).toBe(status.INVALID_ARGUMENT);

    // The seed's "Track upload event", the owner's notification, and exactly the blobs of this track.
    const analytics = await unary(
      analyticsClient.getAnalytics.bind(analyticsClient),
      GetAnalyticsRequest.fromPartial({ eventType: 'track.uploaded' }),
      dj.md,
    );
    expect(analytics.total).toBe(1);
    expect(analytics.events[0]).toMatchObject({
      eventType: 'track.uploaded',
      userId: dj.userId,
      properties: {
        track_id: String(trackId),
        size: String(wav.length),
        format: 'wav',
        protocol: 'grpc',
        checksum: wavSha,
      },
    });
    expect(await announced).toMatchObject({ title: 'Your track is ready' });
    expect(await notificationsOf(dj.userId)).toEqual([
      { notification_type: 'upload.ready', data: { track_id: trackId, status: 'ready' } },
    ]);
    const files = await blobFiles(trackId);
    const version = `tracks/${trackId}/${wavSha.slice(0, 16)}/`;
    expect(files[0]).toBe(sourceKeyOf(trackId));
    expect(files.slice(1).every((file) => file.startsWith(version))).toBe(true);
    expect(files).toEqual(
      expect.arrayContaining([
        `${version}opus/96k.opus`,
        `${version}aac/128k.m4a`,
        `${version}hls/index.m3u8`,
        `${version}waveform.json`,
      ]),
    );
  });

  it('keeps the chunks that arrived before a call was cancelled, and resumes from there', async () => {
    const dj = await account('dj');
    const { trackId } = await create(dj.md, { fileSize: wav.length }, { checksum: wavSha });
    const chunks = chunksOf(trackId, wav, 0, 32 * 1024);
    const call = client.uploadAudioChunks(dj.md, () => {});
    for (const chunk of chunks.slice(0, 5)) call.write(AudioChunk.fromPartial(chunk));
    // The fifth chunk's arrival is seen in the size of the part being written (the blob's
    // temporary file); then the connection "drops".
    const partDir = path.join(h.config.dataDir, 'blobs', 'staging', String(trackId));
    const written = async () => {
      const names = await readdir(partDir).catch(() => []);
      const sizes = await Promise.all(
        names.map((name) => stat(path.join(partDir, name)).then((s) => s.size)),
      );
      return sizes.reduce((sum, size) => sum + size, 0);
    };
    const deadline = Date.now() + 10_000;
    while ((await written()) < 5 * 32 * 1024) {
      if (Date.now() > deadline) throw new Error('the chunks never reached the staged part');
      await new Promise((resolve) => setImmediate(resolve));
    }
    call.cancel();
    // GetTrack waits for the cancelled call to commit, so the offset is final here.
    const offset = (await getTrack(trackId, dj.md)).bytesReceived;
    expect(offset).toBe(5 * 32 * 1024);
    const done = await sendChunks(dj.md, chunksOf(trackId, wav.subarray(offset), offset));
    expect(done.track).toMatchObject({ bytesReceived: wav.length, checksum: wavSha });
    expect(['uploaded', 'processing', 'ready']).toContain(done.track?.status);
  });

  it('takes an upload of undeclared length in one call', async () => {
    const dj = await account('dj');
    const { trackId } = await create(dj.md, {}, { filename: 'tone.wav' });
    const done = await sendChunks(dj.md, chunksOf(trackId, wav));
    expect(done.track).toMatchObject({
      bytesReceived: wav.length,
      uploadLength: wav.length,
      fileFormat: 'wav',
      checksum: wavSha,
    });
  });

  it('refuses a resumed upload whose bytes do not match the declared checksum, leaving nothing behind', async () => {
    const dj = await account('dj');
    const { trackId } = await create(dj.md, { fileSize: wav.length }, { checksum: wavSha });
    await sendChunks(dj.md, chunksOf(trackId, wav.subarray(0, 100_000)));
    const corrupted = Buffer.from(wav.subarray(100_000));
    corrupted[5000] = (corrupted[5000] ?? 0) ^ 0xff;
    const error = await grpcError(sendChunks(dj.md, chunksOf(trackId, corrupted, 100_000)));
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(field(error)).toBe('checksum');
    expect(error.details).toMatch(
      /^the uploaded file does not match its checksum \(sha256 [0-9a-f]{64}, declared [0-9a-f]{64}\)$/,
    );
    const track = await getTrack(trackId, dj.md);
    expect(track).toMatchObject({ status: 'failed', failureReason: error.details });
    expect(await stagedParts(trackId)).toBe(0);
    expect(await blobFiles(trackId)).toEqual([]);
    expect((await notificationsOf(dj.userId)).map((n) => n.notification_type)).toEqual(['upload.failed']);
  });

  it('checks limits, quota and input at creation, before any byte', async () => {
    const dj = await account('dj');
    const [{ n: before } = { n: -1 }] = await h.sql<{ n: number }[]>`select count(*)::int as n from tracks`;

    const tooBig = await grpcError(create(dj.md, { fileSize: MAX_BYTES + 1 }));
    expect([tooBig.code, vezaCode(tooBig)]).toEqual([status.RESOURCE_EXHAUSTED, 'payload_too_large']);
    expect(tooBig.details).toBe('the file is 4.0 MiB; the limit is 4.0 MiB');

    const tooLong = await grpcError(create(dj.md, { fileSize: 1000, duration: 9 }));
    expect([tooLong.code, field(tooLong), tooLong.details]).toEqual([
      status.INVALID_ARGUMENT,
      'duration',
      'the audio is 9 s long; the limit is 8 s',
    ]);

    const badMeta = await grpcError(create(dj.md, { fileSize: 1000, metadata: Buffer.from('{not json') }));
    expect([badMeta.code, field(badMeta)]).toEqual([status.INVALID_ARGUMENT, 'metadata']);
    const badSum = await grpcError(create(dj.md, { fileSize: 1000 }, { checksum: 'abc' }));
    expect(badSum.details).toBe(
      'metadata.checksum: checksum must be the sha256 of the file in hex (64 characters)',
    );
    const noTitle = await grpcError(create(dj.md, { title: ' ', fileSize: 1000 }));
    expect([noTitle.code, field(noTitle)]).toEqual([status.INVALID_ARGUMENT, 'title']);
    const other = await grpcError(create(dj.md, { userId: dj.userId + 1000, fileSize: 1000 }));
    expect(other.code).toBe(status.PERMISSION_DENIED);
    const anonymous = await grpcError(create(metadata({}), { fileSize: 1000 }));
    expect(anonymous.code).toBe(status.UNAUTHENTICATED);

    await h.sql`insert into upload_quotas (user_id, quota_bytes) values (${dj.userId}, ${wav.length + 10})`;
    const { trackId } = await create(dj.md, { fileSize: wav.length });
    const overQuota = await grpcError(create(dj.md, { fileSize: 100 }));
    expect([overQuota.code, vezaCode(overQuota)]).toEqual([status.RESOURCE_EXHAUSTED, 'resource_exhausted']);
    expect(overQuota.details).toMatch(
      /^upload quota exceeded: [\d.]+ KiB of your [\d.]+ KiB are used and this upload needs 100 bytes; /,
    );
    await unary(client.cancelUpload.bind(client), CancelUploadRequest.fromPartial({ trackId }), dj.md);
    // Cancelling gave the reserved bytes back.
    const fits = await create(dj.md, { fileSize: 100 });
    await unary(
      client.cancelUpload.bind(client),
      CancelUploadRequest.fromPartial({ trackId: fits.trackId }),
      dj.md,
    );

    const [{ n: after } = { n: -2 }] = await h.sql<{ n: number }[]>`select count(*)::int as n from tracks`;
    expect(after).toBe(before);
  });

  it('refuses out-of-order chunks, a wrong offset, bytes past the declared length and a bad per-call checksum', async () => {
    const dj = await account('dj');
    const { trackId } = await create(dj.md, { fileSize: 1000 });
    const piece = Buffer.alloc(100, 7);

    const gap = await grpcError(
      sendChunks(dj.md, [
        { streamId: trackId, chunkIndex: 0, audioData: piece, offset: 0 },
        { streamId: trackId, chunkIndex: 2, audioData: piece },
      ]),
    );
    expect([gap.code, field(gap), gap.details]).toEqual([
      status.INVALID_ARGUMENT,
      'chunk_index',
      'chunk_index 2 is out of order: expected 1',
    ]);
    // The chunk before the gap was good and stays.
    expect((await getTrack(trackId, dj.md)).bytesReceived).toBe(100);

    const wrongOffset = await grpcError(sendChunks(dj.md, chunksOf(trackId, piece, 0)));
    expect([wrongOffset.code, field(wrongOffset), wrongOffset.details]).toEqual([
      status.FAILED_PRECONDITION,
      'offset',
      `offset 0 does not match the 100 bytes received for track ${trackId}`,
    ]);

    const md = bearer(String(dj.md.get('authorization')[0]).slice('Bearer '.length));
    md.set('upload-checksum', `sha256 ${createHash('sha256').update('something else').digest('base64')}`);
    const badSum = await grpcError(sendChunks(md, chunksOf(trackId, piece, 100)));
    expect([badSum.code, field(badSum)]).toEqual([status.INVALID_ARGUMENT, 'upload_checksum']);
    expect((await getTrack(trackId, dj.md)).bytesReceived).toBe(100);
    md.set('upload-checksum', `sha256 ${createHash('sha256').update(piece).digest('base64')}`);
    expect((await sendChunks(md, chunksOf(trackId, piece, 100))).track?.bytesReceived).toBe(200);

    const tooMuch = await grpcError(sendChunks(dj.md, chunksOf(trackId, Buffer.alloc(900), 200)));
    expect([tooMuch.code, vezaCode(tooMuch), tooMuch.details]).toEqual([
      status.RESOURCE_EXHAUSTED,
      'payload_too_large',
      'the upload sends more than its declared 1000 bytes',
    ]);
    expect(await getTrack(trackId, dj.md)).toMatchObject({
      status: 'failed',
      failureReason: tooMuch.details,
    });
    expect(await stagedParts(trackId)).toBe(0);

    const complete = await grpcError(sendChunks(dj.md, chunksOf(trackId, piece, 200)));
    expect(complete.code).toBe(status.FAILED_PRECONDITION);
  });

  it('refuses an upload of undeclared length once it passes the size limit', async () => {
    const dj = await account('dj');
    const { trackId } = await create(dj.md, {});
    const error = await grpcError(
      sendChunks(dj.md, chunksOf(trackId, Buffer.alloc(MAX_BYTES + 1), 0, 1024 * 1024)),
    );
    expect([vezaCode(error), error.details]).toEqual([
      'payload_too_large',
      'the file is larger than the limit of 4.0 MiB',
    ]);
    expect(await getTrack(trackId, dj.md)).toMatchObject({ status: 'failed' });
    expect(await stagedParts(trackId)).toBe(0);
    expect(await blobFiles(trackId)).toEqual([]);
  });
});

describe('who sees what', () => {
  it('shows a private track to its owner and moderators only, a public one to all once ready', async () => {
    const dj = await account('dj');
    const stranger = await account('fan');
    const moderator = await account('mod', ['listener', 'moderator']);
    const privateTrack = await create(dj.md, { title: 'Private' });
    await sendChunks(dj.md, chunksOf(privateTrack.trackId, wav));

    const notFound = await grpcError(getTrack(privateTrack.trackId, stranger.md));
    expect([notFound.code, notFound.details]).toEqual([
      status.NOT_FOUND,
      `track ${privateTrack.trackId} not found`,
    ]);
    expect((await getTrack(privateTrack.trackId, moderator.md)).title).toBe('Private');
    const steal = await grpcError(sendChunks(stranger.md, chunksOf(privateTrack.trackId, wav)));
    expect(steal.code).toBe(status.NOT_FOUND);

    const publicTrack = await create(dj.md, { title: 'Public' }, { is_public: true });
    // Not ready yet: still hidden from others.
    expect((await grpcError(getTrack(publicTrack.trackId, stranger.md))).code).toBe(status.NOT_FOUND);
    const ready = finished(publicTrack.trackId);
    await sendChunks(dj.md, chunksOf(publicTrack.trackId, wav));
    expect(await ready).toMatchObject({ status: 'ready' });
    expect(await getTrack(publicTrack.trackId, stranger.md)).toMatchObject({
      title: 'Public',
      status: 'ready',
      isPublic: true,
    });
    const played = new StreamReader<AudioChunk>(
      client.streamAudio(StreamAudioRequest.fromPartial({ trackId: publicTrack.trackId }), stranger.md),
    );
    await played.finished();
    expect(played.error).toBeNull();
    expect(played.messages.length).toBeGreaterThan(0);

    const listed = await unary(client.listTracks.bind(client), ListTracksRequest.fromPartial({}), dj.md);
    expect(listed.tracks.map((t) => t.title)).toEqual(['Public', 'Private']);
    const page = await unary(
      client.listTracks.bind(client),
      ListTracksRequest.fromPartial({ limit: 1, beforeId: publicTrack.trackId }),
      dj.md,
    );
    expect(page.tracks.map((t) => t.title)).toEqual(['Private']);
    expect(
      (await unary(client.listTracks.bind(client), ListTracksRequest.fromPartial({}), stranger.md)).tracks,
    ).toEqual([]);
  });

  it('cancels an unfinished upload: no track, no staged part', async () => {
    const dj = await account('dj');
    const { trackId } = await create(dj.md, { fileSize: wav.length });
    await sendChunks(dj.md, chunksOf(trackId, wav.subarray(0, 1000)));
    expect(await stagedParts(trackId)).toBeGreaterThan(0);
    await unary(client.cancelUpload.bind(client), CancelUploadRequest.fromPartial({ trackId }), dj.md);
    expect(await stagedParts(trackId)).toBe(0);
    expect((await grpcError(getTrack(trackId, dj.md))).code).toBe(status.NOT_FOUND);
    const again = await grpcError(
      unary(client.cancelUpload.bind(client), CancelUploadRequest.fromPartial({ trackId }), dj.md),
    );
    expect(again.code).toBe(status.NOT_FOUND);
  });
});

describe('the sweeper', () => {
  it('expires idle uploads, removes staged parts nobody will read, and finishes stalled ones', async () => {
    const dj = await account('dj');
    const uploads = createUploads({
      config: h.config,
      sql: h.sql,
      blobs: h.ports.blobs,
      jobs: h.ports.jobs,
      analytics: createAnalytics(h.sql),
      notifier: createNotifier({ sql: h.sql, bus: h.ports.bus, log }),
      log,
      sweepEveryMs: 0,
    });
    const newUpload = (title: string, uploadLength: number, checksum: string | null) =>
      uploads.create({
        ownerId: dj.userId,
        title,
        description: '',
        genre: '',
        isPublic: false,
        fileFormat: null,
        filename: null,
        uploadLength,
        checksum,
        declaredDurationS: null,
        protocol: 'tus',
      });
    try {
      const row = await newUpload('Abandoned', 5000, null);
      await uploads.append({ ownerId: dj.userId, trackId: row.id, offset: 0, chunks: [Buffer.alloc(1000)] });
      // A part whose request never committed: its control plane died hours ago.
      const orphan = `staging/${row.id}/orphan`;
      await h.ports.blobs.put(orphan, Buffer.from('orphan'), 'application/octet-stream');
      await h.sql`
        insert into upload_parts (part_key, track_id, start_offset, created_at)
        values (${orphan}, ${row.id}, 1000, now() - interval '7 hours')`;
      expect(await stagedParts(row.id)).toBe(2);

      await uploads.sweep();
      // Not expired yet: only the orphan goes.
      expect(await stagedParts(row.id)).toBe(1);
      expect(await h.ports.blobs.stat(orphan)).toBeNull();
      await h.sql`update upload_sessions set expires_at = now() - interval '1 second' where track_id = ${row.id}`;
      await uploads.sweep();
      expect(await stagedParts(row.id)).toBe(0);
      expect(await uploads.get(row.id)).toBeNull();

      // Every byte arrived but the finishing never happened (a crash): the sweeper finishes it.
      const stalled = await newUpload('Stalled', wav.length, sha256(wav));
      const part = `staging/${stalled.id}/whole`;
      await h.ports.blobs.put(part, wav, 'application/octet-stream');
      await h.sql`
        insert into upload_parts (part_key, track_id, start_offset, length)
        values (${part}, ${stalled.id}, 0, ${wav.length})`;
      await h.sql`
        update upload_sessions set bytes_received = ${wav.length}, updated_at = now() - interval '2 minutes'
        where track_id = ${stalled.id}`;
      const processedStalled = finished(stalled.id);
      await uploads.sweep();
      expect(await stagedParts(stalled.id)).toBe(0);
      const [source] = await h.sql<{ source_key: string | null; source_checksum: string | null }[]>`
        select source_key, source_checksum from tracks where id = ${stalled.id}`;
      expect(source).toEqual({ source_key: sourceKeyOf(stalled.id), source_checksum: sha256(wav) });
      expect(await processedStalled).toMatchObject({ status: 'ready' });
    } finally {
      await uploads.close();
    }
  });
});

describe('with S3 storage', () => {
  it('stores the source and the outputs in the bucket, and nothing of a refused upload', async () => {
    const s3 = await startS3TestServer();
    const s3h = await startHarness({ ...s3.env, UPLOAD_MAX_DURATION_S: '8', WORKER_CONCURRENCY: '1' });
    const s3Workers = await startWorkers({
      config: s3h.config,
      ports: s3h.ports,
      log,
      maxDurationS: 8,
    });
    const s3Client = new StreamServiceClient(s3h.address, credentials.createInsecure());
    try {
      const s3Api = authCalls(s3h.auth);
      await s3Api.register({ email: 's3@example.com', username: 's3_user', password: STRONG_PASSWORD });
      const { accessToken } = await s3Api.authenticate({
        email: 's3@example.com',
        password: STRONG_PASSWORD,
      });
      const md = bearer(accessToken);
      const send = (chunks: DeepPartial<AudioChunk>[]) =>
        new Promise<UploadAudioResponse>((resolve, reject) => {
          const call = s3Client.uploadAudioChunks(md, (error, response) =>
            error ? reject(error) : resolve(response),
          );
          for (const chunk of chunks) call.write(AudioChunk.fromPartial(chunk));
          call.end();
        });
      const settled = (trackId: number) =>
        new Promise<TrackProgressEvent>((resolve) => {
          const subscription = s3h.ports.bus.subscribe(trackProgressSubject(trackId), (payload) => {
            const event = payload as TrackProgressEvent;
            if (event.status === 'processing') return;
            subscription.unsubscribe();
            resolve(event);
          });
        });

      const good = await unary(
        s3Client.uploadAudio.bind(s3Client),
        UploadAudioRequest.fromPartial({ title: 'S3', fileSize: wav.length }),
        md,
      );
      const ready = settled(good.trackId);
      await send(chunksOf(good.trackId, wav));
      expect(await ready).toMatchObject({ status: 'ready' });
      const [row] = await s3h.sql<
        { source_key: string; renditions: { key: string }[]; waveform_key: string }[]
      >`
        select source_key, renditions, waveform_key from tracks where id = ${good.trackId}`;
      const keys = await s3.keys(`tracks/${good.trackId}/`);
      expect(await s3.keys(`uploads/${good.trackId}/`)).toEqual([row?.source_key]);
      // The staged parts went to the bucket too, and are gone once the source is stored.
      expect(await s3.keys(`staging/${good.trackId}/`)).toEqual([]);
      for (const key of [...(row?.renditions ?? []).map((r) => r.key), row?.waveform_key])
        expect(keys).toContain(key);

      const bad = await unary(
        s3Client.uploadAudio.bind(s3Client),
        UploadAudioRequest.fromPartial({ title: 'Text' }),
        md,
      );
      const failed = settled(bad.trackId);
      await send(chunksOf(bad.trackId, Buffer.from('not audio at all\n'.repeat(50))));
      expect(await failed).toMatchObject({ status: 'failed' });
      expect(await s3.keys(`uploads/${bad.trackId}/`)).toEqual([]);
      expect(await s3.keys(`staging/${bad.trackId}/`)).toEqual([]);
      expect(await s3.keys(`tracks/${bad.trackId}/`)).toEqual([]);
    } finally {
      s3Client.close();
      await s3Workers.close();
      await s3h.close();
      await s3.close();
    }
  });
});
