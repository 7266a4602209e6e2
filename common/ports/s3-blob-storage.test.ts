/**
 * What the S3 adapter does beyond the BlobStorage contract (blob-storage.test.ts runs that
 * against it too): multipart uploads of long streams, its selection by the config, and
 * the config's S3 checks. Against s3rver, a real S3-compatible server.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../config.js';
import { createLogger } from '../log.js';
import {
  createTestDatabase,
  type S3TestServer,
  startS3TestServer,
  type TestDatabase,
} from '../testing/index.js';
import { createPorts, S3BlobStorage } from './index.js';

const log = createLogger({ level: 'silent', name: 's3-test' });

let server: S3TestServer;
beforeAll(async () => {
  server = await startS3TestServer();
});
afterAll(async () => {
  await server?.close();
});

/** `bytes` cut into uneven chunks, as a network would deliver them. */
function chunked(bytes: Buffer): Readable {
  const chunks: Buffer[] = [];
  for (let offset = 0, size = 1; offset < bytes.length; offset += size, size = (size * 7) % 1500 || 1) {
    chunks.push(bytes.subarray(offset, offset + size));
  }
  return Readable.from(chunks);
}

describe('S3BlobStorage', () => {
  it('stores a stream longer than a part as a multipart upload, byte for byte', async () => {
    const blobs = server.storage({ partBytes: 4096 });
    const bytes = randomBytes(4096 * 3 + 123);
    expect(await blobs.put('uploads/1/source', chunked(bytes), 'audio/wav')).toEqual({
      key: 'uploads/1/source',
      size: bytes.length,
      contentType: 'audio/wav',
    });
    expect(await buffer(await blobs.get('uploads/1/source'))).toEqual(bytes);
    expect(await blobs.stat('uploads/1/source')).toEqual({
      key: 'uploads/1/source',
      size: bytes.length,
      contentType: 'audio/wav',
    });
    expect(await buffer(await blobs.get('uploads/1/source', { start: 4090, end: 4200 }))).toEqual(
      bytes.subarray(4090, 4201),
    );
  });

  it('stores a stream of exactly one part, and an empty one', async () => {
    const blobs = server.storage({ partBytes: 1024 });
    const exact = randomBytes(1024);
    await blobs.put('exact.bin', Readable.from([exact]), 'application/octet-stream');
    expect(await buffer(await blobs.get('exact.bin'))).toEqual(exact);
    await blobs.put('empty.bin', Readable.from([]), 'application/octet-stream');
    expect(await blobs.stat('empty.bin')).toMatchObject({ size: 0 });
  });

  it('leaves no object when a multipart stream fails after some parts', async () => {
    const blobs = server.storage({ partBytes: 1024 });
    let sent = 0;
    const failing = new Readable({
      read() {
        sent += 1;
        if (sent > 3) this.destroy(new Error('uploader went away'));
        else this.push(randomBytes(1024));
      },
    });
    await expect(blobs.put('broken/part.bin', failing, 'application/octet-stream')).rejects.toThrow(
      'uploader went away',
    );
    expect(await blobs.stat('broken/part.bin')).toBeNull();
    expect(await server.keys('broken/')).toEqual([]);
  });
});

describe('S3 configuration', () => {
  let db: TestDatabase;
  let dataDir: string;
  beforeAll(async () => {
    db = await createTestDatabase('embedded');
    dataDir = await mkdtemp(path.join(tmpdir(), 'veza-s3-ports-'));
  });
  afterAll(async () => {
    await db?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('makes createPorts use the bucket when S3_BUCKET is set', async () => {
    const config = loadConfig({ VEZA_DATA_DIR: dataDir, PUBLIC_URL: 'https://live.example', ...server.env });
    const ports = await createPorts(config, { sql: db.sql, log });
    try {
      expect(ports.blobs).toBeInstanceOf(S3BlobStorage);
      await ports.blobs.put('ports/hello.txt', Buffer.from('hello'), 'text/plain');
      expect(await server.keys('ports/')).toEqual(['ports/hello.txt']);
      expect(ports.blobs.publicUrl('ports/hello.txt')).toBe('https://live.example/media/ports/hello.txt');
    } finally {
      await ports.close();
    }
  });

  it('refuses incomplete S3 settings, naming them', () => {
    expect(() => loadConfig({ S3_ENDPOINT: 'http://127.0.0.1:9000' })).toThrow(
      new ConfigError('invalid configuration: S3_ENDPOINT set without S3_BUCKET'),
    );
    expect(() => loadConfig({ S3_BUCKET: 'veza', S3_ACCESS_KEY_ID: 'minio' })).toThrow(
      'S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together',
    );
    expect(() => loadConfig({ S3_BUCKET: 'veza', S3_ENDPOINT: 'not a url' })).toThrow(/S3_ENDPOINT=/);
  });
});
