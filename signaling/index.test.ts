/**
 * startEdge as a whole (REST only, no /ws): ephemeral port, readiness without a control plane,
 * and shutdown. The control-plane client is real and points at a port nobody listens on.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, loadConfig } from '../common/index.js';
import { FsBlobStorage } from '../common/ports/index.js';
import { createControlPlaneClient } from '../control-plane/client/index.js';
import { type Edge, startEdge } from './index.js';

let dataDir: string;
let edge: Edge;
let base: string;
const controlPlane = createControlPlaneClient({ address: '127.0.0.1:1', apiKey: 'unused-key-0123456789' });

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'veza-edge-'));
  const config = loadConfig({
    VEZA_DATA_DIR: dataDir,
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    LOG_LEVEL: 'silent',
  });
  edge = await startEdge({
    config,
    log: createLogger({ level: 'silent' }),
    controlPlane,
    blobs: new FsBlobStorage({ root: path.join(dataDir, 'blobs'), baseUrl: config.publicUrl }),
    shutdownGraceMs: 1_000,
  });
  base = `http://127.0.0.1:${edge.port}`;
});

afterAll(async () => {
  await edge?.close();
  controlPlane.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('startEdge', () => {
  it('listens on an ephemeral port and reports it', () => {
    expect(edge.port).toBeGreaterThan(0);
  });

  it('is alive but not ready while the control plane is unreachable', async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(503);
    // grpc-js's own text names addresses; clients only learn that the control plane is down (and,
    // once the balancer has seen every address fail, that none can take calls).
    expect(await ready.json()).toEqual({
      error: {
        code: 'unavailable',
        message: expect.stringMatching(
          /^not ready: the control plane is unavailable(: none can take calls)?$/,
        ),
      },
    });
  });

  it('maps an unreachable control plane to 503 on API routes too', async () => {
    const response = await fetch(`${base}/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'a@example.com', password: 'x' }),
    });
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({
      error: {
        code: 'unavailable',
        message: expect.stringMatching(/^the control plane is unavailable(: none can take calls)?$/),
      },
    });
  });

  it('stops accepting on close', async () => {
    await edge.close();
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
    // close() is idempotent.
    await edge.close();
  });
});
