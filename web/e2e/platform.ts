/**
 * The real platform for a browser test: standalone mode in this process (edge, control plane,
 * one mediasoup worker, transcode worker) on its own embedded-PostgreSQL test database, with
 * the web app built if its sources changed.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Platform, startPlatform } from '../../app/index.js';
import { createLogger, loadConfig } from '../../common/index.js';
import { createTestDatabase } from '../../common/testing/index.js';
import { buildWeb, isWebBuildStale } from '../build.js';

export interface E2ePlatform {
  platform: Platform;
  /** http://localhost:<port>: Chromium offers no loopback ICE candidate, localhost pages are fine. */
  baseUrl: string;
  /** A temporary folder for the test's own files (the platform's data is in its `data/`). */
  scratchDir: string;
  close(): Promise<void>;
}

export async function startE2ePlatform(name: string): Promise<E2ePlatform> {
  if (await isWebBuildStale()) await buildWeb();
  const [database, scratchDir] = await Promise.all([
    createTestDatabase('embedded'),
    mkdtemp(path.join(tmpdir(), `veza-${name}-`)),
  ]);
  let platform: Platform | undefined;
  const close = async () => {
    await platform?.close();
    await database.drop();
    await rm(scratchDir, { recursive: true, force: true });
  };
  try {
    const config = loadConfig({
      VEZA_DATA_DIR: path.join(scratchDir, 'data'),
      DATABASE_URL: database.url,
      HTTP_PORT: '0',
      GRPC_PORT: '0',
      MEDIA_WORKERS: '1',
      LOG_LEVEL: 'warn',
    });
    platform = await startPlatform(config, createLogger({ level: 'warn', name }));
    return { platform, baseUrl: `http://localhost:${platform.httpPort}`, scratchDir, close };
  } catch (error) {
    await close();
    throw error;
  }
}
