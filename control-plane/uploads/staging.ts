/**
 * Staging of unfinished uploads where every control plane reaches it: the bytes of each
 * request are one blob in BlobStorage (`staging/<trackId>/<uuid>`, a "part"), and PostgreSQL
 * records the parts (`upload_parts`) beside the upload's committed offset. So the next
 * request of an upload may reach any control plane behind the edge's balancer, and one that
 * is stopped mid-upload loses nothing that was committed.
 *
 * A part counts once committed, in the transaction that moves the offset; a request that
 * lost the race (another committed first) or failed drops its own part. Parts are never
 * appended to: a blob is written once, which every BlobStorage does atomically.
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { NotFoundError } from '../../common/contracts/index.js';
import type { BlobStorage } from '../../common/ports/index.js';
import type { UploadStore } from './store.js';

/** The committed parts do not add up to the committed offset, or a part's blob is gone. */
export class StagingLostError extends Error {
  override readonly name = 'StagingLostError';
}

const CONTENT_TYPE = 'application/octet-stream';

export class Staging {
  constructor(
    private readonly blobs: BlobStorage,
    private readonly store: UploadStore,
  ) {}

  /** Where a new part of `trackId` goes. */
  prefixOf(trackId: number): string {
    return `staging/${trackId}/`;
  }

  /** Records a part starting at `start` and writes `bytes` to it; returns its key. Drops it if the write fails. */
  async write(trackId: number, start: number, bytes: AsyncIterable<Buffer>): Promise<string> {
    const key = `${this.prefixOf(trackId)}${randomUUID()}`;
    await this.store.addPart(trackId, key, start);
    try {
      await this.blobs.put(key, Readable.from(bytes, { objectMode: false }), CONTENT_TYPE);
    } catch (error) {
      await this.drop(key);
      throw error;
    }
    return key;
  }

  /** Deletes one part, blob first (a row without its blob is swept; a blob without a row would leak). */
  async drop(key: string): Promise<void> {
    await this.blobs.delete(key);
    await this.store.dropParts([key]);
  }

  /**
   * The upload's bytes, `length` of them, read part after part. Throws StagingLostError
   * (before any byte, or while reading) when the parts do not cover exactly [0, length).
   */
  async read(trackId: number, length: number): Promise<AsyncIterable<Buffer>> {
    const parts = await this.store.committedParts(trackId);
    let at = 0;
    for (const part of parts) {
      if (part.start !== at) break;
      at += part.length;
    }
    if (at !== length) {
      throw new StagingLostError(`the staged parts of track ${trackId} hold ${at} of its ${length} bytes`);
    }
    const blobs = this.blobs;
    return (async function* () {
      for (const part of parts) {
        let stream: Readable;
        try {
          stream = await blobs.get(part.key);
        } catch (error) {
          if (error instanceof NotFoundError) {
            throw new StagingLostError(`staged part ${part.key} of track ${trackId} is missing`);
          }
          throw error;
        }
        for await (const chunk of stream) yield chunk as Buffer;
      }
    })();
  }

  /** Deletes every part of an upload. */
  async remove(trackId: number): Promise<void> {
    const keys = await this.store.partKeys(trackId);
    await Promise.all(keys.map((key) => this.blobs.delete(key)));
    await this.store.dropParts(keys);
  }

  /** Deletes parts that nothing will read (see UploadStore.orphanParts); returns how many. */
  async sweep(pendingBefore: Date): Promise<number> {
    const keys = await this.store.orphanParts(pendingBefore);
    for (const key of keys) await this.blobs.delete(key);
    await this.store.dropParts(keys);
    return keys.length;
  }
}
