/**
 * Fresh, migrated databases for tests: on the run's embedded PostgreSQL (standalone) or
 * on the machine's PostgreSQL server (cluster, TEST_DATABASE_URL).
 */
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { connectDatabase, MIGRATIONS_DIR, migrate, type Sql } from '../db/index.js';
import { createLogger } from '../log.js';

export const clusterServices = {
  databaseUrl: process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
  redisUrl: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
  natsUrl: process.env.TEST_NATS_URL ?? 'nats://127.0.0.1:4222',
};

/**
 * A VEZA_NAMESPACE of its own for one test's cluster (its NATS subjects, JetStream streams and
 * Redis keys), so test files running at the same time on the machine's NATS and Redis never
 * see each other's events, jobs, sessions or rate limits.
 */
export function testNamespace(label: string): string {
  return `t-${label}-${randomBytes(4).toString('hex')}`.slice(0, 32);
}

/**
 * The environment every process of one split-role cluster test shares (each adds its
 * VEZA_ROLES and node id): the machine's PostgreSQL database `databaseUrl`, Redis and NATS
 * under a namespace of its own, ephemeral ports on loopback, one signing keys secret for its
 * control planes, and limits that a test's many sign-ups from 127.0.0.1 do not reach.
 */
export function clusterTestEnv(
  label: string,
  databaseUrl: string,
  serviceKey: string,
): Record<string, string> {
  return {
    VEZA_MODE: 'cluster',
    DATABASE_URL: databaseUrl,
    REDIS_URL: clusterServices.redisUrl,
    NATS_URL: clusterServices.natsUrl,
    VEZA_NAMESPACE: testNamespace(label),
    SERVICE_API_KEYS: serviceKey,
    SIGNING_KEYS_SECRET: randomBytes(32).toString('base64'),
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    GRPC_HOST: '127.0.0.1',
    GRPC_PORT: '0',
    CONTROL_HTTP_PORT: '0',
    LOG_LEVEL: 'silent',
    REGISTER_LIMIT_PER_IP: '1000',
    LOGIN_LIMIT_PER_IP: '1000',
  };
}

export interface TestDatabase {
  url: string;
  sql: Sql;
  drop(): Promise<void>;
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

export async function createTestDatabase(kind: 'embedded' | 'cluster' = 'embedded'): Promise<TestDatabase> {
  const serverUrl = kind === 'embedded' ? inject('embeddedPostgresUrl') : clusterServices.databaseUrl;
  const name = `veza_test_${randomBytes(6).toString('hex')}`;
  const admin = connectDatabase(serverUrl, { max: 1 });
  await admin.unsafe(`create database ${name}`);
  await admin.end();
  const url = withDatabase(serverUrl, name);
  const sql = connectDatabase(url, { max: 5 });
  await migrate(sql, MIGRATIONS_DIR, createLogger({ level: 'warn', name: 'test-migrate' }));
  return {
    url,
    sql,
    async drop() {
      await sql.end({ timeout: 5 });
      const cleanup = connectDatabase(serverUrl, { max: 1 });
      await cleanup.unsafe(`drop database if exists ${name} with (force)`);
      await cleanup.end();
    },
  };
}
