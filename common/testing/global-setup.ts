/**
 * Starts one embedded PostgreSQL for the whole test run; each test file then makes its
 * own database on it (see databases.ts), so files are isolated and run in parallel.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../db/index.js';
import { createLogger } from '../log.js';
import { freePort } from './free-port.js';

declare module 'vitest' {
  export interface ProvidedContext {
    embeddedPostgresUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(path.join(tmpdir(), 'veza-test-pg-'));
  // A free port per run, so several runs (developers, CI, benchmarks) can overlap.
  const port = process.env.TEST_EMBEDDED_PG_PORT
    ? Number(process.env.TEST_EMBEDDED_PG_PORT)
    : await freePort();
  const db = await startEmbeddedPostgres(dir, port, createLogger({ level: 'warn', name: 'test-pg' }));
  project.provide('embeddedPostgresUrl', db.url);
  return async () => {
    await db.stop();
    await rm(dir, { recursive: true, force: true });
  };
}
