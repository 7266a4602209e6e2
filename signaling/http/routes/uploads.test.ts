/**
 * Uploads over REST end to end: a real edge (uWS on port 0) streaming to a real control
 * plane over gRPC, over a fresh database with the standalone ports, and the real worker
 * role running the system ffmpeg. Outcomes are awaited on the bus (`tracks.*.progress`,
 * `notifications.user.<id>`) and in the edge's log, never with sleeps.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ALL_TRACK_PROGRESS,
  notificationSubject,
  type TrackProgressEvent,
} from '../../../common/contracts/index.js';
import { createLogger } from '../../../common/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../../../control-plane/client/index.js';
import {
  captureLogs,
  type Harness,
  type LogCapture,
  STRONG_PASSWORD,
  startHarness,
} from '../../../control-plane/test-harness.js';
import { startWorkers, type Workers } from '../../../workers/index.js';
import { listFiles, makeAudio } from '../../../workers/test-audio.js';
import { type Edge, startEdge } from '../../index.js';
import type { TrackJson } from './tracks.js';

const MAX_BYTES = 1024 * 1024;
const MAX_DURATION_S = 5;
const log = createLogger({ level: 'silent', name: 'uploads-rest-test' });

let h: Harness;
let workers: Workers;
let client: ControlPlaneClient;
let edge: Edge;
let edgeLogs: LogCapture;
let base: string;
let root: string;
let wav: Buffer;
let seq = 0;
const progress: TrackProgressEvent[] = [];
const progressWaiters = new Set<() => void>();

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const b64 = (text: string) => Buffer.from(text).toString('base64');

interface ErrorJson {
  error: { code: string; message: string; field?: string };
}

async function account(prefix: string): Promise<{ userId: number; token: string }> {
  seq += 1;
  const email = `${prefix}${seq}@example.com`;
  const registered = await fetch(`${base}/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, username: `${prefix}_${seq}`, password: STRONG_PASSWORD }),
  });
  expect(registered.status).toBe(201);
  const userId = ((await registered.json()) as { user: { id: number } }).user.id;
  const login = await fetch(`${base}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password: STRONG_PASSWORD }),
  });
  return { userId, token: ((await login.json()) as { access_token: string }).access_token };
}

/** Resolves once the track reached `ready` or `failed` (events seen before the call count too). */
async function processed(trackId: number): Promise<TrackProgressEvent> {
  for (;;) {
    const done = progress.find((event) => event.trackId === trackId && event.status !== 'processing');
    if (done) return done;
    await new Promise<void>((resolve) => progressWaiters.add(resolve));
  }
}

function nextNotification(userId: number, type: string): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const subscription = h.ports.bus.subscribe(notificationSubject(userId), (payload) => {
      const event = payload as Record<string, unknown>;
      if (event.notification_type !== type) return;
      subscription.unsubscribe();
      resolve(event);
    });
  });
}

function tusHeaders(token: string, extra: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${token}`, 'tus-resumable': '1.0.0', ...extra };
}

async function createTus(
  token: string,
  length: number,
  metadata: Record<string, string>,
  extra: Record<string, string> = {},
) {
  const header = Object.entries(metadata)
    .map(([key, value]) => `${key} ${b64(value)}`)
    .join(',');
  return fetch(`${base}/stream/upload`, {
    method: 'POST',
    headers: tusHeaders(token, { 'upload-length': String(length), 'upload-metadata': header, ...extra }),
  });
}

function patch(url: string, token: string, offset: number, body: Buffer, extra: Record<string, string> = {}) {
  return fetch(url, {
    method: 'PATCH',
    headers: tusHeaders(token, {
      'upload-offset': String(offset),
      'content-type': 'application/offset+octet-stream',
      ...extra,
    }),
    body: new Uint8Array(body),
  });
}

const head = (url: string, token: string) => fetch(url, { method: 'HEAD', headers: tusHeaders(token) });

async function getTrack(trackId: number, token?: string): Promise<{ status: number; track: TrackJson }> {
  const response = await fetch(`${base}/tracks/${trackId}`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  return { status: response.status, track: ((await response.json()) as { track: TrackJson }).track };
}

async function multipart(token: string, file: Buffer, fields: Record<string, string>, filename = 'song.wav') {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.set(name, value);
  form.set('file', new Blob([new Uint8Array(file)]), filename);
  return fetch(`${base}/stream/upload`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
    body: form,
  });
}

/**
 * A PATCH whose connection drops: the headers announce `declared` bytes, `sent` of them go
 * out, then the socket is destroyed. Resolves once the edge has finished with the request
 * (its "aborted" log line comes after the handler, so after the control plane committed).
 */
async function droppedPatch(
  url: string,
  token: string,
  offset: number,
  sent: Buffer,
  declared: number,
): Promise<void> {
  const target = new URL(url);
  const aborted = edgeLogs.waitForLine(
    (line) =>
      line.msg === 'request aborted by client' && line.method === 'PATCH' && line.path === target.pathname,
  );
  const socket = connect(Number(target.port), target.hostname);
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('connect', () => resolve());
  });
  const headers = [
    `PATCH ${target.pathname} HTTP/1.1`,
    `host: ${target.host}`,
    `authorization: Bearer ${token}`,
    'tus-resumable: 1.0.0',
    `upload-offset: ${offset}`,
    'content-type: application/offset+octet-stream',
    `content-length: ${declared}`,
    '',
    '',
  ].join('\r\n');
  await new Promise<void>((resolve) =>
    socket.write(Buffer.concat([Buffer.from(headers), sent]), () => resolve()),
  );
  socket.destroy();
  await aborted;
}

/** Every staged part (control-plane/uploads/staging.ts): its blob and its row, which must agree. */
async function stagingFiles(): Promise<string[]> {
  const files = (await listFiles(path.join(h.config.dataDir, 'blobs', 'staging'))).map((f) => `staging/${f}`);
  const rows = await h.sql<{ part_key: string }[]>`select part_key from upload_parts order by part_key`;
  expect(files.sort()).toEqual(rows.map((row) => row.part_key));
  return files;
}
const blobRoot = () => path.join(h.config.dataDir, 'blobs');
async function blobsOf(trackId: number): Promise<string[]> {
  const [uploads, tracks] = await Promise.all([
    listFiles(path.join(blobRoot(), 'uploads', String(trackId))),
    listFiles(path.join(blobRoot(), 'tracks', String(trackId))),
  ]);
  return [
    ...uploads.map((f) => `uploads/${trackId}/${f}`),
    ...tracks.map((f) => `tracks/${trackId}/${f}`),
  ].sort();
}

/** Every key a ready track refers to: its source, renditions, waveform and HLS segments. */
async function referencedKeys(trackId: number): Promise<string[]> {
  const [row] = await h.sql<{ source_key: string; renditions: { key: string }[]; waveform_key: string }[]>`
    select source_key, renditions, waveform_key from tracks where id = ${trackId}`;
  if (!row) throw new Error(`no track ${trackId}`);
  const playlistKey = row.renditions.find((r) => r.key.endsWith('.m3u8'))?.key ?? '';
  const playlist = (await readFile(path.join(blobRoot(), playlistKey))).toString();
  const segments = playlist
    .split('\n')
    .filter((line) => line.endsWith('.ts'))
    .map((segment) => path.posix.join(path.posix.dirname(playlistKey), segment));
  return [row.source_key, ...row.renditions.map((r) => r.key), row.waveform_key, ...segments].sort();
}

async function tracksCount(): Promise<number> {
  const [row] = await h.sql<{ n: number }[]>`select count(*)::int as n from tracks`;
  return row?.n ?? -1;
}

beforeAll(async () => {
  h = await startHarness({
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    UPLOAD_MAX_BYTES: String(MAX_BYTES),
    UPLOAD_MAX_DURATION_S: String(MAX_DURATION_S),
    WORKER_CONCURRENCY: '2',
  });
  h.ports.bus.subscribe(ALL_TRACK_PROGRESS, (payload) => {
    progress.push(payload as TrackProgressEvent);
    for (const waiter of progressWaiters) waiter();
    progressWaiters.clear();
  });
  workers = await startWorkers({
    config: h.config,
    ports: h.ports,
    log,
    maxDurationS: MAX_DURATION_S,
  });
  client = createControlPlaneClient({ address: h.address, apiKey: h.apiKey, log });
  edgeLogs = captureLogs('info');
  edge = await startEdge({ config: h.config, log: edgeLogs.log, controlPlane: client, blobs: h.ports.blobs });
  base = `http://127.0.0.1:${edge.port}`;
  root = await mkdtemp(path.join(tmpdir(), 'veza-upload-rest-'));
  wav = await readFile(await makeAudio(path.join(root, 'tone.wav'), 'wav', 'sine=f=440:d=3'));
});

afterAll(async () => {
  await edge?.close();
  client?.close();
  await workers?.close();
  await h?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('tus resumable upload', () => {
  it('takes a wav in three PATCHes with a dropped connection in the middle, then serves it ready', async () => {
    const dj = await account('dj');
    const options = await fetch(`${base}/stream/upload`, { method: 'OPTIONS' });
    expect(options.status).toBe(204);
    expect(
      Object.fromEntries(
        ['tus-version', 'tus-extension', 'tus-max-size'].map((n) => [n, options.headers.get(n)]),
      ),
    ).toEqual({
      'tus-version': '1.0.0',
      'tus-extension': 'creation,termination,checksum,expiration',
      'tus-max-size': String(MAX_BYTES),
    });

    const ready = nextNotification(dj.userId, 'upload.ready');
    const created = await createTus(dj.token, wav.length, {
      title: 'Sine',
      genre: 'test',
      filename: 'sine.wav',
      checksum: sha256(wav),
    });
    expect(created.status).toBe(201);
    const location = created.headers.get('location') ?? '';
    const body = (await created.json()) as { track_id: number; track: TrackJson };
    const trackId = body.track_id;
    expect(location).toBe(`${h.config.publicUrl}/stream/upload/${trackId}`);
    expect(created.headers.get('tus-resumable')).toBe('1.0.0');
    expect(Date.parse(created.headers.get('upload-expires') ?? '')).toBeGreaterThan(Date.now());
    expect(body.track).toMatchObject({
      id: trackId,
      status: 'uploading',
      format: 'wav',
      upload: { offset: 0, length: wav.length },
    });
    const url = `${base}/stream/upload/${trackId}`;

    const third = Math.floor(wav.length / 3);
    const first = await patch(url, dj.token, 0, wav.subarray(0, third));
    expect(first.status).toBe(204);
    expect(first.headers.get('upload-offset')).toBe(String(third));

    // The second PATCH loses its connection half way: what arrived is kept.
    await droppedPatch(url, dj.token, third, wav.subarray(third, third + 50_000), third);
    const resumed = await head(url, dj.token);
    expect(resumed.status).toBe(200);
    expect(resumed.headers.get('upload-length')).toBe(String(wav.length));
    const offset = Number(resumed.headers.get('upload-offset'));
    expect(offset).toBeGreaterThan(third);
    expect(offset).toBeLessThanOrEqual(third + 50_000);

    const last = await patch(url, dj.token, offset, wav.subarray(offset));
    expect(last.status).toBe(204);
    expect(last.headers.get('upload-offset')).toBe(String(wav.length));
    expect(await stagingFiles()).toEqual([]);

    expect(await processed(trackId)).toMatchObject({ status: 'ready' });
    const { status, track } = await getTrack(trackId, dj.token);
    expect(status).toBe(200);
    expect(track).toMatchObject({
      id: trackId,
      title: 'Sine',
      status: 'ready',
      progress: 100,
      failure_reason: null,
      format: 'wav',
      upload: null,
    });
    expect(track.duration).toBeCloseTo(3, 1);
    expect(track.renditions.map((r) => [r.format, r.bitrate])).toEqual([
      ['opus', 96_000],
      ['aac', 128_000],
      ['hls', 128_000],
    ]);
    expect(track.checksum).toBe(sha256(wav));
    expect(await ready).toMatchObject({ notification_type: 'upload.ready' });

    // Played through the edge: the waveform, HLS with its content types, ranges on a rendition.
    const media = (url: string) => url.replace(h.config.publicUrl, base);
    const waveform = await fetch(media(track.waveform_url ?? ''));
    expect(waveform.headers.get('content-type')).toBe('application/json');
    expect(((await waveform.json()) as { peaks: number[] }).peaks).toHaveLength(1000);
    const playlist = await fetch(media(track.hls_url ?? ''));
    expect(playlist.headers.get('content-type')).toBe('application/vnd.apple.mpegurl');
    const segment = (await playlist.text()).split('\n').find((line) => line.endsWith('.ts')) ?? '';
    const segmentReply = await fetch(new URL(segment, media(track.hls_url ?? '')));
    expect([segmentReply.status, segmentReply.headers.get('content-type')]).toEqual([200, 'video/mp2t']);
    const opus = track.renditions.find((r) => r.format === 'opus');
    const range = await fetch(media(opus?.url ?? ''), { headers: { range: 'bytes=0-99' } });
    expect([range.status, range.headers.get('content-type'), (await range.arrayBuffer()).byteLength]).toEqual(
      [206, 'audio/ogg; codecs=opus', 100],
    );
    expect(range.headers.get('cache-control')).toContain('immutable');
    // The original is never served.
    expect((await fetch(`${base}/media/uploads/${trackId}/source`)).status).toBe(404);

    const list = await fetch(`${base}/tracks`, { headers: { authorization: `Bearer ${dj.token}` } });
    expect(((await list.json()) as { tracks: TrackJson[] }).tracks.map((t) => t.id)).toEqual([trackId]);
  });

  it('speaks tus errors: version, offset conflicts, per-request checksums, termination', async () => {
    const dj = await account('dj');
    const noVersion = await fetch(`${base}/stream/upload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${dj.token}`, 'upload-length': '10' },
    });
    expect([noVersion.status, noVersion.headers.get('tus-version')]).toEqual([412, '1.0.0']);
    const noLength = await fetch(`${base}/stream/upload`, { method: 'POST', headers: tusHeaders(dj.token) });
    expect([noLength.status, ((await noLength.json()) as ErrorJson).error.message]).toEqual([
      400,
      'missing Upload-Length header',
    ]);
    const anonymous = await fetch(`${base}/stream/upload`, {
      method: 'POST',
      headers: { 'tus-resumable': '1.0.0', 'upload-length': '10' },
    });
    expect(anonymous.status).toBe(401);

    const created = await createTus(dj.token, 1000, { title: 'Errors' });
    const url = created.headers.get('location')?.replace(h.config.publicUrl, base) ?? '';
    const conflict = await patch(url, dj.token, 5, Buffer.alloc(10));
    expect(conflict.status).toBe(409);
    expect(((await conflict.json()) as ErrorJson).error).toMatchObject({
      code: 'failed_precondition',
      field: 'offset',
    });

    const piece = Buffer.alloc(100, 1);
    const wrongSum = await patch(url, dj.token, 0, piece, {
      'upload-checksum': `sha1 ${createHash('sha1').update('other').digest('base64')}`,
    });
    expect(wrongSum.status).toBe(460);
    expect((await head(url, dj.token)).headers.get('upload-offset')).toBe('0');
    const rightSum = await patch(url, dj.token, 0, piece, {
      'upload-checksum': `sha1 ${createHash('sha1').update(piece).digest('base64')}`,
    });
    expect([rightSum.status, rightSum.headers.get('upload-offset')]).toEqual([204, '100']);

    const wrongType = await fetch(url, {
      method: 'PATCH',
      headers: tusHeaders(dj.token, { 'upload-offset': '100', 'content-type': 'application/json' }),
      body: '{}',
    });
    expect(wrongType.status).toBe(400);

    const stranger = await account('fan');
    expect((await head(url, stranger.token)).status).toBe(404);
    expect((await fetch(url, { method: 'DELETE', headers: tusHeaders(stranger.token) })).status).toBe(404);
    const terminated = await fetch(url, { method: 'DELETE', headers: tusHeaders(dj.token) });
    expect(terminated.status).toBe(204);
    expect((await head(url, dj.token)).status).toBe(404);
    expect(await stagingFiles()).toEqual([]);
  });

  it('refuses a file over the quota with a clear message', async () => {
    const dj = await account('dj');
    await h.sql`insert into upload_quotas (user_id, quota_bytes) values (${dj.userId}, 1000)`;
    const refused = await createTus(dj.token, 1001, { title: 'Too much' });
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as ErrorJson).error).toMatchObject({
      code: 'resource_exhausted',
      message: expect.stringMatching(
        /^upload quota exceeded: 0 bytes of your 1000 bytes are used and this upload needs 1001 bytes/,
      ),
    });
  });
});

describe('multipart upload', () => {
  it('stores the same file uploaded twice once per track, with no orphan files', async () => {
    const dj = await account('dj');
    const ids: number[] = [];
    for (const title of ['First copy', 'Second copy']) {
      const response = await multipart(dj.token, wav, { title, description: 'twice', genre: 'test' });
      expect(response.status).toBe(201);
      const body = (await response.json()) as { track_id: number; track: TrackJson };
      expect(body.track).toMatchObject({
        title,
        description: 'twice',
        genre: 'test',
        format: 'wav',
        checksum: sha256(wav),
      });
      expect(['uploaded', 'processing', 'ready']).toContain(body.track.status);
      ids.push(body.track_id);
    }
    for (const id of ids) expect(await processed(id)).toMatchObject({ status: 'ready' });
    const [a = 0, b = 0] = ids;
    expect(a).not.toBe(b);
    for (const id of ids) expect(await blobsOf(id)).toEqual(await referencedKeys(id));
    expect(await stagingFiles()).toEqual([]);
  });
});

describe('bad files: each refused with a clear reason, nothing left behind', () => {
  async function expectFailed(trackId: number, token: string, reason: RegExp | string): Promise<void> {
    expect(await processed(trackId)).toMatchObject({ status: 'failed' });
    const { track } = await getTrack(trackId, token);
    expect(track.status).toBe('failed');
    if (typeof reason === 'string') expect(track.failure_reason).toBe(reason);
    else expect(track.failure_reason).toMatch(reason);
    expect(track.renditions).toEqual([]);
    expect(await blobsOf(trackId)).toEqual([]);
    expect(await stagingFiles()).toEqual([]);
  }

  async function uploadBad(token: string, file: Buffer, filename: string): Promise<number> {
    const response = await multipart(token, file, { title: filename }, filename);
    expect(response.status).toBe(201);
    return ((await response.json()) as { track_id: number }).track_id;
  }

  it('a text file renamed .mp3', async () => {
    const dj = await account('dj');
    const failed = nextNotification(dj.userId, 'upload.failed');
    const id = await uploadBad(dj.token, Buffer.from('la la la\n'.repeat(200)), 'lyrics.mp3');
    await expectFailed(id, dj.token, 'the file is not a recognised audio format (it may be corrupt)');
    expect(await failed).toMatchObject({ body: expect.stringContaining('not a recognised audio format') });
  });

  it('a truncated file', async () => {
    const dj = await account('dj');
    const id = await uploadBad(dj.token, wav.subarray(0, Math.floor(wav.length / 2)), 'cut.wav');
    await expectFailed(id, dj.token, /^the file is truncated/);
  });

  it('audio longer than the limit', async () => {
    const dj = await account('dj');
    const long = path.join(root, 'long.flac');
    await makeAudio(long, 'flac', `sine=f=300:d=${MAX_DURATION_S + 1}`, { channels: 1 });
    const id = await uploadBad(dj.token, await readFile(long), 'long.flac');
    await expectFailed(
      id,
      dj.token,
      `the audio is ${MAX_DURATION_S + 1} s long; the limit is ${MAX_DURATION_S} s`,
    );
  });

  it('a zero-length file and a file over the size limit, refused before any track exists', async () => {
    const dj = await account('dj');
    const before = await tracksCount();
    const empty = await multipart(dj.token, Buffer.alloc(0), { title: 'Nothing' });
    expect([empty.status, ((await empty.json()) as ErrorJson).error]).toEqual([
      400,
      { code: 'invalid_argument', message: 'the file is empty', field: 'file' },
    ]);
    const emptyTus = await createTus(dj.token, 0, { title: 'Nothing' });
    expect(emptyTus.status).toBe(400);

    const bigTus = await createTus(dj.token, MAX_BYTES + 1, { title: 'Big' });
    expect([bigTus.status, ((await bigTus.json()) as ErrorJson).error.message]).toEqual([
      413,
      'the file is 1.0 MiB; the limit is 1.0 MiB',
    ]);
    const big = await multipart(dj.token, Buffer.alloc(MAX_BYTES + 1), { title: 'Big' });
    expect(big.status).toBe(413);
    const huge = await multipart(dj.token, Buffer.alloc(MAX_BYTES + 100 * 1024), { title: 'Huge' });
    expect(huge.status).toBe(413);
    expect(await tracksCount()).toBe(before);
    expect(await stagingFiles()).toEqual([]);
  });

  it('a resumed upload whose chunks do not match the checksum', async () => {
    const dj = await account('dj');
    const failed = nextNotification(dj.userId, 'upload.failed');
    const created = await createTus(dj.token, wav.length, { title: 'Corrupted', checksum: sha256(wav) });
    const url = created.headers.get('location')?.replace(h.config.publicUrl, base) ?? '';
    const trackId = ((await created.json()) as { track_id: number }).track_id;
    const half = Math.floor(wav.length / 2);
    expect((await patch(url, dj.token, 0, wav.subarray(0, half))).status).toBe(204);
    const corrupted = Buffer.from(wav.subarray(half));
    corrupted[1000] = (corrupted[1000] ?? 0) ^ 0x55;
    const refused = await patch(url, dj.token, half, corrupted);
    expect(refused.status).toBe(400);
    const error = ((await refused.json()) as ErrorJson).error;
    expect(error).toMatchObject({ code: 'invalid_argument', field: 'checksum' });
    expect(error.message).toMatch(/^the uploaded file does not match its checksum/);

    expect((await head(url, dj.token)).status).toBe(410);
    const { track } = await getTrack(trackId, dj.token);
    expect(track).toMatchObject({ status: 'failed', failure_reason: error.message, upload: null });
    expect(await blobsOf(trackId)).toEqual([]);
    expect(await stagingFiles()).toEqual([]);
    expect(await failed).toMatchObject({ notification_type: 'upload.failed' });
  });
});

describe('GET /tracks/:id', () => {
  it('shows a private track to its owner only, a public ready one to anyone', async () => {
    const dj = await account('dj');
    const fan = await account('fan');
    const privateId = (
      (await (await multipart(dj.token, wav, { title: 'Mine' })).json()) as { track_id: number }
    ).track_id;
    const publicId = (
      (await (await multipart(dj.token, wav, { title: 'Ours', is_public: 'true' })).json()) as {
        track_id: number;
      }
    ).track_id;
    expect(await processed(publicId)).toMatchObject({ status: 'ready' });
    expect((await getTrack(privateId, fan.token)).status).toBe(404);
    expect((await getTrack(privateId)).status).toBe(404);
    expect(await getTrack(publicId)).toMatchObject({
      status: 200,
      track: { title: 'Ours', is_public: true, status: 'ready' },
    });
    expect((await fetch(`${base}/tracks/abc`)).status).toBe(400);
    expect((await fetch(`${base}/tracks`)).status).toBe(401);
  });
});
