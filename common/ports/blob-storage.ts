/**
 * BlobStorage port: immutable binary objects by key (avatars, uploads, renditions).
 *
 * Adapters: files under the data directory (standalone) and S3-compatible storage
 * (cluster, when S3_* is set).
 */
import type { Readable } from 'node:stream';
import { InvalidArgumentError } from '../contracts/index.js';

export interface BlobInfo {
  key: string;
  size: number;
  contentType: string;
}

export interface BlobStorage {
  /** Writes atomically: readers see the old object or the whole new one, never a part. */
  put(key: string, data: Buffer | Readable, contentType: string): Promise<BlobInfo>;
  /** `range` bounds are inclusive, as in HTTP; an end past the last byte reads to the end. Throws NotFoundError. */
  get(key: string, range?: { start: number; end: number }): Promise<Readable>;
  /** null when there is no such blob. */
  stat(key: string): Promise<BlobInfo | null>;
  /** Deleting a missing blob is not an error. */
  delete(key: string): Promise<void>;
  /** The URL a browser fetches the object from. */
  publicUrl(key: string): string;
  /**
   * Every blob whose key starts with `prefix` (a folder: it ends with "/"), sorted by key.
   * Recordings list their segments this way, and a replay's deletion finds what to remove.
   */
  list(prefix: string): Promise<BlobInfo[]>;
  /** Deletes every blob under `prefix` (a folder, ending with "/"); returns how many were deleted. */
  deletePrefix(prefix: string): Promise<number>;
}

/** A folder prefix: a valid key followed by "/", so `streams/1/` never matches `streams/10/`. */
export function assertBlobPrefix(prefix: string): void {
  if (!prefix.endsWith('/')) {
    throw new InvalidArgumentError(`blob prefix "${prefix.slice(0, 600)}" must end with "/"`, 'prefix');
  }
  assertBlobKey(prefix.slice(0, -1));
}

const KEY = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,511}$/;

/** Keys are built from ids and hashes; reject anything that could walk out of the store. */
export function assertBlobKey(key: string): void {
  if (!KEY.test(key) || key.split('/').some((part) => part === '..' || part === '.' || part === '')) {
    throw new InvalidArgumentError(`invalid blob key "${key.slice(0, 600)}"`, 'key');
  }
}
