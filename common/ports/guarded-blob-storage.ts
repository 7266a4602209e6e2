/**
 * BlobStorage behind a circuit breaker (S3): while the object store keeps failing, reads and
 * writes fail at once with a 503 and Retry-After instead of each waiting for the SDK's retries and
 * timeouts. A missing object or a bad key is the store's answer, not its failure.
 */
import type { Readable } from 'node:stream';
import type { Breaker } from '../circuit-breaker.js';
import { VezaError } from '../contracts/index.js';
import type { BlobInfo, BlobStorage } from './blob-storage.js';

/** What counts against the store: anything but an answer it gave (not found, invalid key). */
export function isBlobStoreFailure(error: unknown): boolean {
  return !(error instanceof VezaError) || error.code === 'unavailable' || error.code === 'internal';
}

export class GuardedBlobStorage implements BlobStorage {
  constructor(
    private readonly inner: BlobStorage,
    readonly breaker: Breaker,
  ) {}

  put(key: string, data: Buffer | Readable, contentType: string): Promise<BlobInfo> {
    return this.breaker.run(() => this.inner.put(key, data, contentType));
  }

  get(key: string, range?: { start: number; end: number }): Promise<Readable> {
    return this.breaker.run(() => this.inner.get(key, range));
  }

  stat(key: string): Promise<BlobInfo | null> {
    return this.breaker.run(() => this.inner.stat(key));
  }

  delete(key: string): Promise<void> {
    return this.breaker.run(() => this.inner.delete(key));
  }

  publicUrl(key: string): string {
    return this.inner.publicUrl(key);
  }
}
