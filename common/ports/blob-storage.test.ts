import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError, NotFoundError } from '../contracts/index.js';
import { startS3TestServer } from '../testing/index.js';
import type { BlobStorage } from './blob-storage.js';
import { FsBlobStorage } from './fs-blob-storage.js';

/** Every file under `dir`, relative, so a stray temp file cannot hide. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)))
    .sort();
}

interface AdapterUnderTest {
  blobs: BlobStorage;
  /** Everything the store holds (files, objects), so a stray temp file or part cannot hide. */
  contents(): Promise<string[]>;
  /** What storing `key` adds to contents(). */
  layoutOf(key: string): string[];
  close(): Promise<void>;
}

const adapters: { name: string; create(): Promise<AdapterUnderTest> }[] = [
  {
    name: 'fs',
    async create() {
      const root = await mkdtemp(path.join(tmpdir(), 'veza-blobs-'));
      const blobs = new FsBlobStorage({ root, baseUrl: 'https://veza.example/' });
      return {
        blobs,
        contents: () => filesUnder(root),
        layoutOf: (key) => [path.join('.meta', `${key}.json`), key],
        close: () => rm(root, { recursive: true, force: true }),
      };
    },
  },
  {
    name: 's3',
    async create() {
      const server = await startS3TestServer();
      // Small parts, so a streamed put of a few bytes already goes through a multipart upload.
      const blobs = server.storage({ partBytes: 4 });
      return { blobs, contents: () => server.keys(), layoutOf: (key) => [key], close: () => server.close() };
    },
  },
];

describe.each(adapters)('BlobStorage: $name', (adapter) => {
  let store: AdapterUnderTest;
  let blobs: BlobStorage;
  beforeAll(async () => {
    store = await adapter.create();
    blobs = store.blobs;
  });
  afterAll(async () => {
    await store?.close();
  });

  const bytes = Buffer.from('0123456789');

  it('stores a buffer and reads it back with its size and content type', async () => {
    expect(await blobs.put('avatars/1/a.png', bytes, 'image/png')).toEqual({
      key: 'avatars/1/a.png',
      size: 10,
      contentType: 'image/png',
    });
    expect(await buffer(await blobs.get('avatars/1/a.png'))).toEqual(bytes);
    expect(await blobs.stat('avatars/1/a.png')).toEqual({
      key: 'avatars/1/a.png',
      size: 10,
      contentType: 'image/png',
    });
  });

  it('stores a stream', async () => {
    const source = Readable.from([Buffer.from('abc'), Buffer.from('def')]);
    expect(await blobs.put('uploads/s.bin', source, 'application/octet-stream')).toMatchObject({ size: 6 });
    expect((await buffer(await blobs.get('uploads/s.bin'))).toString()).toBe('abcdef');
  });

  it('reads an inclusive byte range', async () => {
    await blobs.put('range.txt', bytes, 'text/plain; charset=utf-8');
    expect((await buffer(await blobs.get('range.txt', { start: 2, end: 5 }))).toString()).toBe('2345');
    expect((await buffer(await blobs.get('range.txt', { start: 9, end: 9 }))).toString()).toBe('9');
    expect((await buffer(await blobs.get('range.txt', { start: 7, end: 100 }))).toString()).toBe('789');
    await expect(blobs.get('range.txt', { start: 10, end: 12 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(blobs.get('range.txt', { start: 5, end: 4 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(blobs.get('range.txt', { start: -1, end: 4 })).rejects.toBeInstanceOf(InvalidArgumentError);
    expect((await blobs.stat('range.txt'))?.contentType).toBe('text/plain; charset=utf-8');
  });

  it('replaces a blob and its content type', async () => {
    await blobs.put('replace.bin', bytes, 'image/png');
    await blobs.put('replace.bin', Buffer.from('new'), 'image/webp');
    expect(await blobs.stat('replace.bin')).toEqual({
      key: 'replace.bin',
      size: 3,
      contentType: 'image/webp',
    });
    expect((await buffer(await blobs.get('replace.bin'))).toString()).toBe('new');
  });

  it('reports a missing blob', async () => {
    expect(await blobs.stat('missing.bin')).toBeNull();
    await expect(blobs.get('missing.bin')).rejects.toBeInstanceOf(NotFoundError);
    await expect(blobs.get('missing.bin', { start: 0, end: 1 })).rejects.toBeInstanceOf(NotFoundError);
  });

  it('deletes idempotently', async () => {
    await blobs.put('gone/x.bin', bytes, 'application/octet-stream');
    await blobs.delete('gone/x.bin');
    expect(await blobs.stat('gone/x.bin')).toBeNull();
    await expect(blobs.get('gone/x.bin')).rejects.toBeInstanceOf(NotFoundError);
    await blobs.delete('gone/x.bin');
    await blobs.delete('never/existed.bin');
  });

  it('rejects keys that could leave the store', async () => {
    for (const key of ['../x', 'a/../../x', '/etc/passwd', 'a//b', 'a/./b', '.meta/x', '', 'a\\b', 'a b']) {
      await expect(blobs.put(key, bytes, 'text/plain'), key).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(blobs.get(key), key).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(blobs.stat(key), key).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(blobs.delete(key), key).rejects.toBeInstanceOf(InvalidArgumentError);
      expect(() => blobs.publicUrl(key), key).toThrow(InvalidArgumentError);
    }
    await expect(blobs.put('ok.bin', bytes, 'not a type')).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('builds the public URL under /media', () => {
    expect(blobs.publicUrl('avatars/1/a.png')).toBe('https://veza.example/media/avatars/1/a.png');
  });

  it('writes atomically: no temp file after a put, the old blob intact after a failed one', async () => {
    await blobs.put('atomic/a.bin', bytes, 'image/png');
    const before = await store.contents();
    expect(before.filter((file) => file.includes('atomic'))).toEqual(store.layoutOf('atomic/a.bin'));

    const failing = new Readable({
      read() {
        this.push(Buffer.from('partial'));
        this.destroy(new Error('client went away'));
      },
    });
    await expect(blobs.put('atomic/a.bin', failing, 'image/webp')).rejects.toThrow('client went away');

    expect(await store.contents()).toEqual(before);
    expect(await blobs.stat('atomic/a.bin')).toEqual({
      key: 'atomic/a.bin',
      size: 10,
      contentType: 'image/png',
    });
    expect(await buffer(await blobs.get('atomic/a.bin'))).toEqual(bytes);
  });

  it('lists a folder by key and deletes everything under it, and nothing beside it', async () => {
    await blobs.put('prefixed/1/b/seg-2.ogg', bytes, 'audio/ogg');
    await blobs.put('prefixed/1/a.json', bytes, 'application/json');
    await blobs.put('prefixed/1/b/seg-1.ogg', bytes, 'audio/ogg');
    await blobs.put('prefixed/10/kept.ogg', bytes, 'audio/ogg');
    const listed = await blobs.list('prefixed/1/');
    expect(listed.map((blob) => [blob.key, blob.size])).toEqual([
      ['prefixed/1/a.json', 10],
      ['prefixed/1/b/seg-1.ogg', 10],
      ['prefixed/1/b/seg-2.ogg', 10],
    ]);
    expect(await blobs.list('prefixed/2/')).toEqual([]);

    expect(await blobs.deletePrefix('prefixed/1/')).toBe(3);
    expect(await blobs.list('prefixed/1/')).toEqual([]);
    expect((await store.contents()).filter((file) => file.includes('prefixed/1/'))).toEqual([]);
    expect((await blobs.list('prefixed/10/')).map((blob) => blob.key)).toEqual(['prefixed/10/kept.ogg']);
    expect(await blobs.deletePrefix('prefixed/1/')).toBe(0);
  });

  it('refuses a prefix that is not a folder', async () => {
    await expect(blobs.list('prefixed/1')).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(blobs.deletePrefix('../')).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(blobs.deletePrefix('/')).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});
