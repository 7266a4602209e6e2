/**
 * BlobStorage over plain files under a root directory (the data directory's `blobs/`).
 *
 * `<root>/<key>` holds the bytes, so a blob is an ordinary file; its content type lives in
 * `<root>/.meta/<key>.json`. That tree cannot collide with a blob: a key never starts with a
 * dot. Every write goes to a temp file in the target's directory and is renamed into place,
 * which POSIX makes atomic. The metadata is renamed first, so a new key is never visible
 * without its content type; keys are immutable in practice (built from ids and hashes).
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, type Dirent } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { InvalidArgumentError, NotFoundError } from '../contracts/index.js';
import { assertBlobKey, assertBlobPrefix, type BlobInfo, type BlobStorage } from './blob-storage.js';

const META_DIR = '.meta';
const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
const CONTENT_TYPE =
  /^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=[^;\r\n]+)*$/;

const metaSchema = z.object({ contentType: z.string() });

function isMissing(error: unknown): boolean {
  return error instanceof Error && 'code' in error && (error.code === 'ENOENT' || error.code === 'ENOTDIR');
}

export interface FsBlobStorageOptions {
  root: string;
  /** Public base URL of the edge, without a trailing slash needed. */
  baseUrl: string;
}

export class FsBlobStorage implements BlobStorage {
  private readonly root: string;
  private readonly baseUrl: string;

  constructor(options: FsBlobStorageOptions) {
    this.root = path.resolve(options.root);
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
  }

  async put(key: string, data: Buffer | Readable, contentType: string): Promise<BlobInfo> {
    const file = this.fileOf(key);
    if (!CONTENT_TYPE.test(contentType) || contentType.length > 200) {
      throw new InvalidArgumentError(`invalid content type "${contentType.slice(0, 200)}"`, 'contentType');
    }
    const metaFile = this.metaOf(key);
    await mkdir(path.dirname(file), { recursive: true });
    await mkdir(path.dirname(metaFile), { recursive: true });
    const tmpData = temporaryName(file);
    const tmpMeta = temporaryName(metaFile);
    try {
      const source = Buffer.isBuffer(data) ? Readable.from([data]) : data;
      await pipeline(source, createWriteStream(tmpData, { flags: 'wx' }));
      const { size } = await stat(tmpData);
      await writeFile(tmpMeta, JSON.stringify({ contentType }), { flag: 'wx' });
      await rename(tmpMeta, metaFile);
      await rename(tmpData, file);
      return { key, size, contentType };
    } catch (error) {
      await Promise.all([rm(tmpData, { force: true }), rm(tmpMeta, { force: true })]);
      throw error;
    }
  }

  async get(key: string, range?: { start: number; end: number }): Promise<Readable> {
    const file = this.fileOf(key);
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(file, 'r');
    } catch (error) {
      if (isMissing(error)) throw new NotFoundError(`blob "${key}" not found`);
      throw error;
    }
    try {
      if (!range) return handle.createReadStream();
      const { size } = await handle.stat();
      const { start } = range;
      if (
        !Number.isSafeInteger(start) ||
        !Number.isSafeInteger(range.end) ||
        start < 0 ||
        range.end < start
      ) {
        throw new InvalidArgumentError('range must satisfy 0 <= start <= end', 'range');
      }
      if (start >= size)
        throw new InvalidArgumentError(`range starts beyond the ${size} bytes of the blob`, 'range');
      // Like HTTP, an end past the last byte means "to the end"; both bounds are inclusive.
      return handle.createReadStream({ start, end: Math.min(range.end, size - 1) });
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  async stat(key: string): Promise<BlobInfo | null> {
    const file = this.fileOf(key);
    let size: number;
    try {
      const info = await stat(file);
      if (!info.isFile()) return null;
      size = info.size;
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
    return { key, size, contentType: await this.contentTypeOf(key) };
  }

  async delete(key: string): Promise<void> {
    const file = this.fileOf(key);
    // The data first: once it is gone the blob is gone, whatever happens to the metadata.
    for (const target of [file, this.metaOf(key)]) {
      try {
        await unlink(target);
      } catch (error) {
        if (!isMissing(error)) throw error;
      }
    }
  }

  publicUrl(key: string): string {
    assertBlobKey(key);
    return `${this.baseUrl}/media/${key}`;
  }

  async list(prefix: string): Promise<BlobInfo[]> {
    assertBlobPrefix(prefix);
    const dir = path.join(this.root, prefix);
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { recursive: true, withFileTypes: true });
    } catch (error) {
      if (isMissing(error)) return [];
      throw error;
    }
    const keys = entries
      .filter((entry) => entry.isFile() && !entry.name.startsWith('.'))
      .map((entry) =>
        path.relative(this.root, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'),
      )
      .sort();
    const found: BlobInfo[] = [];
    for (const key of keys) {
      const info = await this.stat(key);
      if (info) found.push(info);
    }
    return found;
  }

  async deletePrefix(prefix: string): Promise<number> {
    const blobs = await this.list(prefix);
    for (const blob of blobs) await this.delete(blob.key);
    // The folders too (temp files of a crashed writer with them), so nothing is left under the prefix.
    await rm(path.join(this.root, prefix), { recursive: true, force: true });
    await rm(path.join(this.root, META_DIR, prefix), { recursive: true, force: true });
    return blobs.length;
  }

  private async contentTypeOf(key: string): Promise<string> {
    try {
      const parsed = metaSchema.safeParse(JSON.parse(await readFile(this.metaOf(key), 'utf8')));
      return parsed.success ? parsed.data.contentType : DEFAULT_CONTENT_TYPE;
    } catch (error) {
      if (isMissing(error) || error instanceof SyntaxError) return DEFAULT_CONTENT_TYPE;
      throw error;
    }
  }

  private fileOf(key: string): string {
    assertBlobKey(key);
    const file = path.join(this.root, key);
    // assertBlobKey already forbids `..`; this second check keeps that true whatever the regex becomes.
    if (!file.startsWith(`${this.root}${path.sep}`))
      throw new InvalidArgumentError(`invalid blob key "${key}"`, 'key');
    return file;
  }

  private metaOf(key: string): string {
    return path.join(this.root, META_DIR, `${key}.json`);
  }
}

/** Hidden and unique, in the target's directory so the rename never crosses a filesystem. */
function temporaryName(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
}
