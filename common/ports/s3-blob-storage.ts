/**
 * BlobStorage over an S3-compatible object store (AWS S3, MinIO, s3rver in tests), used in
 * cluster mode when S3_BUCKET is set.
 *
 * Path-style addressing (`<endpoint>/<bucket>/<key>`), which MinIO and s3rver need. Objects
 * are private: browsers fetch them through the edge's /media/<key>, exactly as with the file
 * adapter, so Range, content types, caching and access rules live in one place.
 *
 * Atomicity comes from S3 itself: a PutObject or a completed multipart upload replaces the
 * object in one step. A stream of unknown length is read a part at a time: when it ends
 * within the first part it becomes one PutObject, otherwise a multipart upload that is
 * aborted (best effort) if the stream fails, so no partial object ever becomes visible.
 */
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { InvalidArgumentError, NotFoundError } from '../contracts/index.js';
import type { Logger } from '../log.js';
import { assertBlobKey, assertBlobPrefix, type BlobInfo, type BlobStorage } from './blob-storage.js';

const CONTENT_TYPE =
  /^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=[^;\r\n]+)*$/;
const DEFAULT_PART_BYTES = 8 * 1024 * 1024;

export interface S3BlobStorageOptions {
  bucket: string;
  /** e.g. http://127.0.0.1:9000 for MinIO; AWS's regional endpoint when absent. */
  endpoint?: string;
  region: string;
  /** The SDK's default credential chain when absent. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Public base URL of the edge; objects are served at `<baseUrl>/media/<key>`. */
  baseUrl: string;
  /** Size of the parts of a multipart upload (S3 needs at least 5 MiB except for the last one). */
  partBytes?: number;
  log?: Logger;
}

function isNotFound(error: unknown): boolean {
  if (!(error instanceof S3ServiceException)) return false;
  return error.name === 'NoSuchKey' || error.name === 'NotFound' || error.$metadata.httpStatusCode === 404;
}

function isInvalidRange(error: unknown): boolean {
  return (
    error instanceof S3ServiceException &&
    (error.name === 'InvalidRange' || error.$metadata.httpStatusCode === 416)
  );
}

export class S3BlobStorage implements BlobStorage {
  readonly client: S3Client;
  readonly bucket: string;
  private readonly baseUrl: string;
  private readonly partBytes: number;
  private readonly log: Logger | undefined;

  constructor(options: S3BlobStorageOptions) {
    this.bucket = options.bucket;
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.partBytes = options.partBytes ?? DEFAULT_PART_BYTES;
    this.log = options.log;
    this.client = new S3Client({
      region: options.region,
      forcePathStyle: true,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
    });
  }

  async put(key: string, data: Buffer | Readable, contentType: string): Promise<BlobInfo> {
    assertBlobKey(key);
    if (!CONTENT_TYPE.test(contentType) || contentType.length > 200) {
      throw new InvalidArgumentError(`invalid content type "${contentType.slice(0, 200)}"`, 'contentType');
    }
    if (Buffer.isBuffer(data)) return this.putOnce(key, data, contentType);
    try {
      // Read up to one part; a stream that ends there is a plain PutObject.
      const iterator = data[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
      const first = await readPart(iterator, this.partBytes);
      if (first.done) return await this.putOnce(key, first.part, contentType);
      return await this.putMultipart(key, first.part, iterator, contentType);
    } finally {
      // Whatever happened, the source is not read any further.
      data.destroy();
    }
  }

  async get(key: string, range?: { start: number; end: number }): Promise<Readable> {
    assertBlobKey(key);
    if (range) {
      const { start, end } = range;
      if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
        throw new InvalidArgumentError('range must satisfy 0 <= start <= end', 'range');
      }
    }
    try {
      const response = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: key,
          ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
        }),
      );
      if (!response.Body) throw new NotFoundError(`blob "${key}" not found`);
      return response.Body as Readable;
    } catch (error) {
      if (isNotFound(error)) throw new NotFoundError(`blob "${key}" not found`);
      if (range && isInvalidRange(error)) {
        throw new InvalidArgumentError('range starts beyond the end of the blob', 'range');
      }
      throw error;
    }
  }

  async stat(key: string): Promise<BlobInfo | null> {
    assertBlobKey(key);
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return {
        key,
        size: head.ContentLength ?? 0,
        contentType: head.ContentType ?? 'application/octet-stream',
      };
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    assertBlobKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (error) {
      // S3 answers 204 for a missing key; some compatible servers answer 404.
      if (!isNotFound(error)) throw error;
    }
  }

  publicUrl(key: string): string {
    assertBlobKey(key);
    return `${this.baseUrl}/media/${key}`;
  }

  async list(prefix: string): Promise<BlobInfo[]> {
    assertBlobPrefix(prefix);
    const found: BlobInfo[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          ...(token ? { ContinuationToken: token } : {}),
        }),
      );
      for (const object of page.Contents ?? []) {
        // A listing carries no content type; a HEAD per key would cost a round trip each.
        if (object.Key) found.push({ key: object.Key, size: object.Size ?? 0, contentType: '' });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async deletePrefix(prefix: string): Promise<number> {
    const blobs = await this.list(prefix);
    // DeleteObjects takes at most 1,000 keys per request.
    for (let start = 0; start < blobs.length; start += 1000) {
      const batch = blobs.slice(start, start + 1000);
      const result = await this.client.send(
        new DeleteObjectsCommand({
          Bucket: this.bucket,
          Delete: { Objects: batch.map((blob) => ({ Key: blob.key })), Quiet: true },
        }),
      );
      const failed = result.Errors?.[0];
      if (failed) throw new Error(`could not delete blob "${failed.Key}": ${failed.Code ?? 'unknown error'}`);
    }
    return blobs.length;
  }

  /** Closes the SDK's connection pool. */
  close(): void {
    this.client.destroy();
  }

  private async putOnce(key: string, body: Buffer, contentType: string): Promise<BlobInfo> {
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentType: contentType,
        ContentLength: body.length,
      }),
    );
    return { key, size: body.length, contentType };
  }

  private async putMultipart(
    key: string,
    firstPart: Buffer,
    rest: AsyncIterator<Buffer>,
    contentType: string,
  ): Promise<BlobInfo> {
    const created = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: contentType }),
    );
    const uploadId = created.UploadId;
    if (!uploadId) throw new Error('S3 created a multipart upload without an UploadId');
    const parts: { ETag: string; PartNumber: number }[] = [];
    let size = 0;
    try {
      let part: Buffer | null = firstPart;
      while (part) {
        const partNumber = parts.length + 1;
        const uploaded = await this.client.send(
          new UploadPartCommand({
            Bucket: this.bucket,
            Key: key,
            UploadId: uploadId,
            PartNumber: partNumber,
            Body: part,
            ContentLength: part.length,
          }),
        );
        parts.push({ ETag: uploaded.ETag ?? '', PartNumber: partNumber });
        size += part.length;
        const next = await readPart(rest, this.partBytes);
        part = next.part.length > 0 ? next.part : null;
        if (next.done && part) {
          const last = await this.client.send(
            new UploadPartCommand({
              Bucket: this.bucket,
              Key: key,
              UploadId: uploadId,
              PartNumber: partNumber + 1,
              Body: part,
              ContentLength: part.length,
            }),
          );
          parts.push({ ETag: last.ETag ?? '', PartNumber: partNumber + 1 });
          size += part.length;
          part = null;
        }
      }
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
        }),
      );
      return { key, size, contentType };
    } catch (error) {
      await this.client
        .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }))
        .catch((abortError: unknown) =>
          // The store expires abandoned uploads itself (a bucket lifecycle rule on AWS and MinIO).
          this.log?.warn({ err: abortError, key }, 'could not abort a failed multipart upload'),
        );
      throw error;
    }
  }
}

/** Reads from `iterator` until `size` bytes or its end; `done` says the source ended. */
async function readPart(
  iterator: AsyncIterator<Buffer>,
  size: number,
): Promise<{ part: Buffer; done: boolean }> {
  const chunks: Buffer[] = [];
  let length = 0;
  while (length < size) {
    const next = await iterator.next();
    if (next.done) return { part: Buffer.concat(chunks, length), done: true };
    const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
    chunks.push(chunk);
    length += chunk.length;
  }
  return { part: Buffer.concat(chunks, length), done: false };
}
