/**
 * S3 behind its circuit breaker, against a real S3-compatible server (s3rver) that goes away:
 * missing objects never open the breaker, a store that stopped answering does, and the breaker
 * then refuses at once with a 503-class error and Retry-After.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createBreaker } from '../circuit-breaker.js';
import { UnavailableError, type VezaError } from '../contracts/index.js';
import { createLogger } from '../log.js';
import { type S3TestServer, startS3TestServer } from '../testing/index.js';
import { GuardedBlobStorage, isBlobStoreFailure } from './guarded-blob-storage.js';
import { S3BlobStorage } from './index.js';

const log = createLogger({ level: 'silent', name: 'guarded-s3-test' });
let server: S3TestServer | null = null;
let adapter: S3BlobStorage | null = null;
afterAll(async () => {
  adapter?.close();
  await server?.close();
});

describe('GuardedBlobStorage', () => {
  it('opens on a store that stopped answering, never on missing objects', async () => {
    server = await startS3TestServer('guarded-test');
    adapter = new S3BlobStorage({
      bucket: server.bucket,
      endpoint: server.endpoint,
      region: 'us-east-1',
      credentials: {
        accessKeyId: String(server.env.S3_ACCESS_KEY_ID),
        secretAccessKey: String(server.env.S3_SECRET_ACCESS_KEY),
      },
      baseUrl: 'https://veza.example/',
    });
    const breaker = createBreaker({
      target: 's3',
      peer: 'guarded-test',
      resetTimeoutMs: 60_000,
      log,
      settings: { volumeThreshold: 3 },
      isFailure: isBlobStoreFailure,
    });
    const blobs = new GuardedBlobStorage(adapter, breaker);
    try {
      await blobs.put('guarded/a.txt', Buffer.from('hello'), 'text/plain');
      for (let i = 0; i < 6; i++) expect(await blobs.stat(`guarded/missing-${i}`)).toBeNull();
      expect(breaker.state()).toBe('closed');
      expect(blobs.publicUrl('guarded/a.txt')).toBe(adapter.publicUrl('guarded/a.txt'));

      await server.close();
      server = null;
      let failures = 0;
      while (breaker.state() !== 'open' && failures < 10) {
        await expect(blobs.stat('guarded/a.txt')).rejects.toThrow();
        failures++;
      }
      expect(breaker.state()).toBe('open');
      const started = performance.now();
      const refused = (await blobs.get('guarded/a.txt').catch((error: unknown) => error)) as VezaError;
      expect(performance.now() - started).toBeLessThan(50);
      expect(refused).toBeInstanceOf(UnavailableError);
      expect(refused.message).toMatch(/s3 is unavailable \(circuit open\)/);
      expect(refused.details.retryAfterMs).toBeGreaterThan(1000);
    } finally {
      breaker.close();
    }
  });
});
