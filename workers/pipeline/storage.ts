/**
 * Moving bytes between BlobStorage and the job's temp directory: the source in (hashed on
 * the way), the outputs out. Publishing is all or nothing from the reader's side: every
 * put is atomic, the HLS playlist goes last, the track row points at the outputs only after
 * the last put, and a failed publish removes what it had written.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
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

/**
 * How many puts a job runs at once: a track's outputs are a few files plus one HLS segment per
 * 6 s, and one at a time each put waited for the round trips of the one before (files or S3).
 */
const PUBLISH_CONCURRENCY = 8;

/**
 * Puts every file under `<prefix>/<path>`; returns the keys in the order of `files`. The HLS
 * playlists go up only after every other file, so a reader never sees one name a missing
 * segment.
 */
export async function publishOutputs(
  blobs: BlobStorage,
  prefix: string,
  outDir: string,
  files: readonly OutputFile[],
  signal?: AbortSignal,
): Promise<string[]> {
  const written: string[] = [];
  const put = async (file: OutputFile) => {
    signal?.throwIfAborted();
    const key = `${prefix}/${file.path}`;
    // Opened here, not by the stream: a stream that fails to open while put() is still
    // preparing has no listener yet, and its error would take the whole process down.
    const stream = (await open(path.join(outDir, file.path))).createReadStream();
    try {
      await blobs.put(key, stream, file.contentType);
    } finally {
      // A put that failed before reading leaves the file open otherwise.
      stream.destroy();
    }
    written.push(key);
  };
  const isPlaylist = (file: OutputFile) => file.path.endsWith('.m3u8');
  try {
    await eachAtMost(
      PUBLISH_CONCURRENCY,
      files.filter((file) => !isPlaylist(file)),
      put,
    );
    await eachAtMost(PUBLISH_CONCURRENCY, files.filter(isPlaylist), put);
    return files.map((file) => `${prefix}/${file.path}`);
  } catch (error) {
    // An aborted job was handed to another attempt, which writes the same keys: leave them.
    if (!signal?.aborted) await deleteKeys(blobs, written);
    throw error;
  }
}

/**
 * Runs `work` over `items`, at most `limit` at a time. After a failure it starts nothing new,
 * waits for what is running (so the caller can clean up everything written), then throws it.
 */
async function eachAtMost<T>(
  limit: number,
  items: readonly T[],
  work: (item: T) => Promise<void>,
): Promise<void> {
  const queue = [...items];
  const failures: unknown[] = [];
  const lane = async () => {
    for (let item = queue.shift(); item !== undefined && failures.length === 0; item = queue.shift()) {
      try {
        await work(item);
      } catch (error) {
        failures.push(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  if (failures.length > 0) throw failures[0];
}

/** Best effort: a key that cannot be deleted now is logged by the caller's retry, not fatal here. */
export async function deleteKeys(blobs: BlobStorage, keys: readonly string[]): Promise<void> {
  await Promise.allSettled(keys.map((key) => blobs.delete(key)));
}
