/**
 * Public surface of the ports: the interfaces, their adapters, and createPorts(), which
 * picks the standalone or the cluster adapter of each port from the config.
 */
import path from 'node:path';
import { Redis } from 'ioredis';
import type { Config } from '../config.js';
import type { Sql } from '../db/index.js';
import type { DependencyProbe } from '../dependency-health.js';
import type { Logger } from '../log.js';
import type { BlobStorage } from './blob-storage.js';
import type { EventBus } from './event-bus.js';
import { FsBlobStorage } from './fs-blob-storage.js';
import { JetStreamJobQueue } from './jetstream-job-queue.js';
import type { JobQueue } from './job-queue.js';
import { MemoryEventBus } from './memory-event-bus.js';
import { MemoryRateLimiter } from './memory-rate-limiter.js';
import { NatsEventBus } from './nats-event-bus.js';
import { PgJobQueue } from './pg-job-queue.js';
import { PgSessionStore } from './pg-session-store.js';
import type { RateLimiter } from './rate-limiter.js';
import { RedisRateLimiter } from './redis-rate-limiter.js';
import { RedisSessionStore } from './redis-session-store.js';
import { S3BlobStorage } from './s3-blob-storage.js';
import type { SessionStore } from './session-store.js';

export { assertBlobKey, type BlobInfo, type BlobStorage } from './blob-storage.js';
export {
  assertSubject,
  type BusHandler,
  type BusResponder,
  type EventBus,
  type Subscription,
  subjectMatches,
} from './event-bus.js';
export { FsBlobStorage, type FsBlobStorageOptions } from './fs-blob-storage.js';
export { GuardedBlobStorage, isBlobStoreFailure } from './guarded-blob-storage.js';
export { JetStreamJobQueue, type JetStreamJobQueueOptions } from './jetstream-job-queue.js';
export {
  type ConsumeOptions,
  type DeadLetter,
  type EnqueueOptions,
  type EnqueueResult,
  type JobConsumer,
  type JobContext,
  type JobHandler,
  type JobQueue,
  type QueueStats,
  UnrecoverableJobError,
} from './job-queue.js';
export { watchJobQueue } from './job-queue-metrics.js';
export { MemoryEventBus, type MemoryEventBusOptions } from './memory-event-bus.js';
export { MemoryRateLimiter } from './memory-rate-limiter.js';
export { NatsEventBus, type NatsEventBusOptions } from './nats-event-bus.js';
export { PgJobQueue, type PgJobQueueOptions } from './pg-job-queue.js';
export { PgSessionStore } from './pg-session-store.js';
export type { RateDecision, RateLimiter, RateRule } from './rate-limiter.js';
export { RedisRateLimiter, type RedisRateLimiterOptions } from './redis-rate-limiter.js';
export { RedisSessionStore, type RedisSessionStoreOptions } from './redis-session-store.js';
export { S3BlobStorage, type S3BlobStorageOptions } from './s3-blob-storage.js';
export { isSessionActive, type SessionRecord, type SessionStore } from './session-store.js';
export { ThreadBusHub } from './thread-bus-hub.js';
export { ThreadEventBus, type ThreadEventBusOptions } from './thread-event-bus.js';

/** Namespaces every Redis key of a deployment. */

export interface Ports {
  bus: EventBus;
  sessions: SessionStore;
  rateLimiter: RateLimiter;
  blobs: BlobStorage;
  /** Durable jobs: PostgreSQL in standalone mode, NATS JetStream in cluster mode. */
  jobs: JobQueue;
  /**
   * Health probes of the cluster adapters' servers (Redis, NATS); none in standalone mode, whose
   * adapters are in-process or PostgreSQL (probed by whoever owns the SQL pool).
   */
  probes: readonly DependencyProbe[];
  /** Closes everything createPorts opened; the SQL pool stays the caller's. */
  close(): Promise<void>;
}

export interface PortsDeps {
  sql: Sql;
  log: Logger;
  /**
   * Standalone mode: the bus to use instead of an in-process one. A role thread of threaded
   * standalone mode passes its ThreadEventBus here, so it reaches the roles of the other threads.
   * The ports own it from then on (close() closes it).
   */
  bus?: EventBus;
}

export async function createPorts(config: Config, deps: PortsDeps): Promise<Ports> {
  const log = deps.log.child({ component: 'ports' });
  const blobs = createBlobStorage(config, log);
  const closeBlobs = () => {
    if (blobs instanceof S3BlobStorage) blobs.close();
  };

  if (config.VEZA_MODE === 'standalone') {
    const bus = deps.bus ?? new MemoryEventBus({ log });
    const sessions = new PgSessionStore(deps.sql);
    // Per event loop. Only the control plane limits (logins, registrations, chat), and in threaded
    // mode it runs in one thread, so its counts stay whole.
    const rateLimiter = new MemoryRateLimiter();
    const jobs = new PgJobQueue(deps.sql, { log });
    return {
      bus,
      sessions,
      rateLimiter,
      blobs,
      jobs,
      probes: [],
      async close() {
        // Jobs first: releasing the ones in flight needs the SQL pool, which the caller ends after this.
        await jobs.close();
        await Promise.all([bus.close(), sessions.close(), rateLimiter.close()]);
        closeBlobs();
      },
    };
  }

  if (deps.bus)
    throw new Error(
      'cluster mode connects its own bus (NATS_URL); a bus is passed in only in standalone mode',
    );
  if (!config.REDIS_URL || !config.NATS_URL) {
    // loadConfig() refuses cluster mode without them; this guards hand-built configs.
    throw new Error('cluster mode needs REDIS_URL and NATS_URL');
  }
  // Connect eagerly so a wrong URL stops the process at start, not at the first login. No offline
  // queue: while Redis is down a command fails at once (a fast 503) instead of waiting, queued, for
  // a reconnection that may take minutes; ioredis keeps reconnecting in the background.
  const redis = new Redis(config.REDIS_URL, {
    lazyConnect: true,
    connectionName: config.nodeId,
    enableOfflineQueue: false,
  });
  redis.on('error', (error: unknown) => log.warn({ err: error }, 'redis connection error'));
  await redis.connect();
  let bus: NatsEventBus;
  try {
    bus = await NatsEventBus.connect(config.NATS_URL, {
      log,
      name: config.nodeId,
      namespace: config.VEZA_NAMESPACE,
    });
  } catch (error) {
    redis.disconnect();
    throw error;
  }
  let jobs: JetStreamJobQueue;
  try {
    jobs = await JetStreamJobQueue.connect(config.NATS_URL, {
      log,
      name: `${config.nodeId}-jobs`,
      prefix: config.VEZA_NAMESPACE,
    });
  } catch (error) {
    await bus.close();
    redis.disconnect();
    throw error;
  }
  const keyPrefix = `${config.VEZA_NAMESPACE}:`;
  const sessions = new RedisSessionStore({ redis, keyPrefix });
  const rateLimiter = new RedisRateLimiter({ redis, keyPrefix });
  return {
    bus,
    sessions,
    rateLimiter,
    blobs,
    jobs,
    probes: [
      {
        name: 'redis',
        check: async () => {
          const answer = await redis.ping();
          if (answer !== 'PONG') throw new Error(`redis answered ${answer} to PING`);
        },
      },
      { name: 'nats', check: () => bus.probe() },
    ],
    async close() {
      await jobs.close();
      await Promise.all([bus.close(), sessions.close(), rateLimiter.close()]);
      await redis.quit();
      closeBlobs();
    },
  };
}

/** S3-compatible storage when S3_BUCKET is set (either mode), files under the data directory otherwise. */
export function createBlobStorage(config: Config, log: Logger): BlobStorage {
  if (!config.S3_BUCKET) {
    return new FsBlobStorage({ root: path.join(config.dataDir, 'blobs'), baseUrl: config.publicUrl });
  }
  return new S3BlobStorage({
    bucket: config.S3_BUCKET,
    region: config.S3_REGION,
    baseUrl: config.publicUrl,
    log,
    ...(config.S3_ENDPOINT ? { endpoint: config.S3_ENDPOINT } : {}),
    ...(config.S3_ACCESS_KEY_ID && config.S3_SECRET_ACCESS_KEY
      ? {
          credentials: { accessKeyId: config.S3_ACCESS_KEY_ID, secretAccessKey: config.S3_SECRET_ACCESS_KEY },
        }
      : {}),
  });
}
