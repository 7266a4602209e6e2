import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config.js';
import { createLogger } from '../log.js';
import { clusterServices, createTestDatabase, type TestDatabase, testNamespace } from '../testing/index.js';
import {
  createPorts,
  FsBlobStorage,
  MemoryEventBus,
  MemoryRateLimiter,
  NatsEventBus,
  PgSessionStore,
  RedisRateLimiter,
  RedisSessionStore,
} from './index.js';

const log = createLogger({ level: 'silent', name: 'ports-test' });

describe('createPorts', () => {
  let db: TestDatabase;
  let dataDir: string;
  beforeAll(async () => {
    db = await createTestDatabase('embedded');
    dataDir = await mkdtemp(path.join(tmpdir(), 'veza-ports-'));
  });
  afterAll(async () => {
    await db?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('wires the in-process adapters in standalone mode', async () => {
    const config = loadConfig({ VEZA_DATA_DIR: dataDir, PUBLIC_URL: 'https://live.example' });
    const ports = await createPorts(config, { sql: db.sql, log });
    try {
      expect(ports.bus).toBeInstanceOf(MemoryEventBus);
      expect(ports.sessions).toBeInstanceOf(PgSessionStore);
      expect(ports.rateLimiter).toBeInstanceOf(MemoryRateLimiter);
      expect(ports.blobs).toBeInstanceOf(FsBlobStorage);
      await ports.blobs.put('a/b.txt', Buffer.from('hi'), 'text/plain');
      expect((await buffer(await ports.blobs.get('a/b.txt'))).toString()).toBe('hi');
      expect(ports.blobs.publicUrl('a/b.txt')).toBe('https://live.example/media/a/b.txt');
    } finally {
      await ports.close();
    }
  });

  it('wires Redis and NATS in cluster mode and closes them', async () => {
    const config = loadConfig({
      VEZA_MODE: 'cluster',
      VEZA_DATA_DIR: dataDir,
      DATABASE_URL: clusterServices.databaseUrl,
      REDIS_URL: clusterServices.redisUrl,
      NATS_URL: clusterServices.natsUrl,
      VEZA_NAMESPACE: testNamespace('ports'),
      SIGNING_KEYS_SECRET: randomBytes(32).toString('base64'),
    });
    const ports = await createPorts(config, { sql: db.sql, log });
    try {
      expect(ports.bus).toBeInstanceOf(NatsEventBus);
      expect(ports.sessions).toBeInstanceOf(RedisSessionStore);
      expect(ports.rateLimiter).toBeInstanceOf(RedisRateLimiter);
      const subject = `t${randomUUID().slice(0, 8)}.ping`;
      const sub = ports.bus.respond(subject, async (payload) => ({ pong: payload }));
      await sub.ready;
      expect(await ports.bus.request(subject, 1)).toEqual({ pong: 1 });
      expect(await ports.sessions.get(randomUUID())).toBeNull();
    } finally {
      await ports.close();
    }
    await expect(ports.bus.publish('after.close', 1)).rejects.toThrow(/closed/);
  });
});
