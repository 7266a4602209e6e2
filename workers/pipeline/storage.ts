/**
 * Moving bytes between BlobStorage and the job's temp directory: the source in (hashed on
 * the way), the outputs out. Publishing is all or nothing from the reader's side: every
 * put is atomic, the HLS playlist goes last, the track row points at the outputs only after
 * the last put, and a failed publish removes what it had written.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BlobStorage } from '../../common/ports/index.js';
import type { OutputFile } from './process.js';

export interface DownloadedSource {
  /** Lowercase hex sha256 of the bytes. */
  sha256: string;
  size: number;
}

export async function downloadSource(
  blobs: BlobStorage,
  key: string,
  target: string,
  signal?: AbortSignal,
): Promise<DownloadedSource> {
  const hash = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
  });
  await pipeline(await blobs.get(key), tap, createWriteStream(target), signal ? { signal } : {});
  return { sha256: hash.digest('hex'), size };
}

/** Puts every file under `<prefix>/<path>`; returns the keys in the order written. */
export async function publishOutputs(
  blobs: BlobStorage,
  prefix: string,
  outDir: string,
  files: readonly OutputFile[],
  signal?: AbortSignal,
): Promise<string[]> {
  const written: string[] = [];
  try {
    for (const file of files) {
      signal?.throwIfAborted();
      const key = `${prefix}/${file.path}`;
      await blobs.put(key, createReadStream(path.join(outDir, file.path)), file.contentType);
      written.push(key);
    }
    return written;
  } catch (error) {
    // An aborted job was handed to another attempt, which writes the same keys: leave them.
    if (!signal?.aborted) await deleteKeys(blobs, written);
    throw error;
  }
}

/** Best effort: a key that cannot be deleted now is logged by the caller's retry, not fatal here. */
export async function deleteKeys(blobs: BlobStorage, keys: readonly string[]): Promise<void> {
  await Promise.allSettled(keys.map((key) => blobs.delete(key)));
}
