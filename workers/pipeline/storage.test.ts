/**
 * Publishing over the file BlobStorage: several puts at once, the playlist last, and nothing
 * left behind when a put fails.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BlobInfo, FsBlobStorage } from '../../common/ports/index.js';
import { listFiles } from '../test-audio.js';
import type { OutputFile } from './process.js';
import { publishOutputs } from './storage.js';

/** The real file storage, noting when each put starts and ends. */
class WatchedBlobs extends FsBlobStorage {
  readonly events: string[] = [];
  running = 0;
  mostAtOnce = 0;

  override async put(key: string, data: Buffer | Readable, contentType: string): Promise<BlobInfo> {
    this.events.push(`start ${key}`);
    this.running += 1;
    this.mostAtOnce = Math.max(this.mostAtOnce, this.running);
    try {
      return await super.put(key, data, contentType);
    } finally {
      this.running -= 1;
      this.events.push(`end ${key}`);
    }
  }
}

let root: string;
let outDir: string;
const segments = Array.from({ length: 20 }, (_, i) => `hls/segment_${String(i).padStart(3, '0')}.ts`);
const files: OutputFile[] = [
  { path: 'opus/96k.opus', contentType: 'audio/ogg; codecs=opus' },
  { path: 'waveform.json', contentType: 'application/json' },
  ...segments.map((segment) => ({ path: segment, contentType: 'video/mp2t' })),
  { path: 'hls/index.m3u8', contentType: 'application/vnd.apple.mpegurl' },
];

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'veza-publish-test-'));
  outDir = path.join(root, 'out');
  for (const file of files) {
    await mkdir(path.dirname(path.join(outDir, file.path)), { recursive: true });
    await writeFile(path.join(outDir, file.path), `bytes of ${file.path}`);
  }
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('publishOutputs', () => {
  it('puts several files at once and the playlist only after every segment', async () => {
    const blobs = new WatchedBlobs({ root: path.join(root, 'blobs-ok'), baseUrl: 'http://veza.test' });
    const keys = await publishOutputs(blobs, 'tracks/1/v', outDir, files);
    expect(keys).toEqual(files.map((file) => `tracks/1/v/${file.path}`));
    expect(await listFiles(path.join(root, 'blobs-ok'))).toEqual(keys.slice().sort());
    expect(blobs.mostAtOnce).toBeGreaterThan(1);
    const playlistStart = blobs.events.indexOf('start tracks/1/v/hls/index.m3u8');
    const lastSegmentEnd = Math.max(...segments.map((s) => blobs.events.indexOf(`end tracks/1/v/${s}`)));
    expect(playlistStart).toBeGreaterThan(lastSegmentEnd);
    expect((await blobs.stat('tracks/1/v/hls/index.m3u8'))?.contentType).toBe(
      'application/vnd.apple.mpegurl',
    );
  });

  it('removes everything it wrote when a put fails, and throws that failure', async () => {
    const blobRoot = path.join(root, 'blobs-failing');
    const blobs = new WatchedBlobs({ root: blobRoot, baseUrl: 'http://veza.test' });
    // A file the render did not make: its put fails midway through the segments.
    const broken = [
      ...files.slice(0, 10),
      { path: 'hls/missing.ts', contentType: 'video/mp2t' },
      ...files.slice(10),
    ];
    await expect(publishOutputs(blobs, 'tracks/2/v', outDir, broken)).rejects.toThrow(/ENOENT/);
    expect(blobs.events.filter((event) => event.startsWith('start')).length).toBeGreaterThan(1);
    expect(blobs.events).not.toContain('start tracks/2/v/hls/index.m3u8');
    expect(await listFiles(blobRoot)).toEqual([]);
  });
});
