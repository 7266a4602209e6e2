/**
 * startEdge as a whole: ephemeral port, extensions, readiness without a control plane,
 * and shutdown. The control-plane client is real and points at a port nobody listens on.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createLogger, loadConfig } from '../common/index.js';
import { FsBlobStorage } from '../common/ports/index.js';
import { createControlPlaneClient } from '../control-plane/client/index.js';
import { type Edge, type EdgeExtension, json, startEdge } from './index.js';

let dataDir: string;
let edge: Edge;
let base: string;
const closed: string[] = [];
const controlPlane = createControlPlaneClient({ address: '127.0.0.1:1', apiKey: 'unused-key-0123456789' });

const extension: EdgeExtension = (registrar) => {
  registrar.route(
    'POST',
    '/extension/echo/:name',
    (request) => json({ name: request.params.name, body: request.json(z.strictObject({ n: z.number() })) }),
    { body: { json: 100 } },
  );
  registrar.app.get('/extension/raw', (res) => {
    res.end('raw uWS route');
  });
  registrar.onClose(() => {
    closed.push('extension');
  });
};

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
    extensions: [extension],
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

  it('serves extension routes with the same limits and errors as its own', async () => {
    const ok = await fetch(`${base}/extension/echo/abc`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"n":1}',
    });
    expect(await ok.json()).toEqual({ name: 'abc', body: { n: 1 } });

    const tooBig = await fetch(`${base}/extension/echo/abc`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ n: 1, pad: 'x'.repeat(200) }),
    });
    expect(tooBig.status).toBe(413);
    expect(await (await fetch(`${base}/extension/raw`)).text()).toBe('raw uWS route');
  });

  it('is alive but not ready while the control plane is unreachable', async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(503);
    // grpc-js's own text names addresses; clients only learn that the control plane is down.
    expect(await ready.json()).toEqual({
      error: { code: 'unavailable', message: 'not ready: the control plane is unavailable' },
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
      error: { code: 'unavailable', message: 'the control plane is unavailable' },
    });
  });

  it('runs close hooks and stops accepting on close', async () => {
    await edge.close();
    expect(closed).toEqual(['extension']);
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
    // close() is idempotent.
    await edge.close();
  });
});
