/**
 * A real S3-compatible server for tests: s3rver on an ephemeral port over a temp directory,
 * with one bucket. For tests only.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { S3BlobStorage, type S3BlobStorageOptions } from '../ports/index.js';

/** s3rver's fixed credentials. */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface S3TestServer {
  endpoint: string;
  bucket: string;
  /** Environment that makes loadConfig() choose S3 storage on this server. */
  env: Record<string, string>;
  /** An adapter on this server (closed with the server). */
  storage(options?: Partial<S3BlobStorageOptions>): S3BlobStorage;
  /** Every key in the bucket, sorted. */
  keys(prefix?: string): Promise<string[]>;
  close(): Promise<void>;
}

export async function startS3TestServer(bucket = 'veza-test'): Promise<S3TestServer> {
  const directory = await mkdtemp(path.join(tmpdir(), 'veza-s3rver-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: [{ name: bucket }],
  });
  const address = await server.run();
  const endpoint = `http://127.0.0.1:${address.port}`;
  const adapters: S3BlobStorage[] = [];
  const storage = (options: Partial<S3BlobStorageOptions> = {}) => {
    const adapter = new S3BlobStorage({
      bucket,
      endpoint,
      region: 'us-east-1',
      credentials: S3RVER_CREDENTIALS,
      baseUrl: 'https://veza.example/',
      ...options,
    });
    adapters.push(adapter);
    return adapter;
  };
  const lister = storage();
  return {
    endpoint,
    bucket,
    env: {
      S3_ENDPOINT: endpoint,
      S3_BUCKET: bucket,
      S3_REGION: 'us-east-1',
      S3_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
      S3_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    },
    storage,
    async keys(prefix) {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const page = await lister.client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            ...(prefix ? { Prefix: prefix } : {}),
            ...(token ? { ContinuationToken: token } : {}),
          }),
        );
        for (const object of page.Contents ?? []) if (object.Key) keys.push(object.Key);
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return keys.sort();
    },
    async close() {
      for (const adapter of adapters) adapter.close();
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}
