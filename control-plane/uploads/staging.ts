/**
 * Staging files: the bytes of unfinished uploads, one file per track under the data
 * directory, appended to as they arrive (never held in memory). The database's committed
 * offset is the truth: a file longer than it (a crash mid-write, an interrupted call with a
 * per-request checksum) is cut back before the next append.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

const FILE = /^(\d+)\.part$/;

/** The staging file has fewer bytes than were committed (lost disk, another node's upload). */
export class StagingLostError extends Error {
  override readonly name = 'StagingLostError';
}

export class Staging {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = path.resolve(dir);
  }

  pathOf(trackId: number): string {
    return path.join(this.dir, `${trackId}.part`);
  }

  /** A handle positioned for writing at `offset`, the committed length. */
  async openAt(trackId: number, offset: number): Promise<FileHandle> {
    await mkdir(this.dir, { recursive: true });
    const file = this.pathOf(trackId);
    if (offset === 0) return open(file, 'w');
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch {
      size = -1;
    }
    if (size < offset) {
      throw new StagingLostError(
        `staging file of track ${trackId} has ${Math.max(size, 0)} of ${offset} bytes`,
      );
    }
    const handle = await open(file, 'r+');
    try {
      await handle.truncate(offset);
      return handle;
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  /** Cuts the file back to `length` (an append that must not count). */
  async truncate(trackId: number, length: number): Promise<void> {
    const handle = await open(this.pathOf(trackId), 'r+');
    try {
      await handle.truncate(length);
    } finally {
      await handle.close();
    }
  }

  async digest(trackId: number): Promise<{ sha256: string; size: number }> {
    const hash = createHash('sha256');
    let size = 0;
    await pipeline(createReadStream(this.pathOf(trackId)), async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) {
        hash.update(chunk);
        size += chunk.length;
      }
    });
    return { sha256: hash.digest('hex'), size };
  }

  read(trackId: number): Readable {
    return createReadStream(this.pathOf(trackId));
  }

  async remove(trackId: number): Promise<void> {
    await rm(this.pathOf(trackId), { force: true });
  }

  /** Track ids that have a staging file here. */
  async list(): Promise<number[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return [];
    }
    return names.flatMap((name) => {
      const match = FILE.exec(name);
      return match ? [Number(match[1])] : [];
    });
  }
}
