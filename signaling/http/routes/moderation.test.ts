/** POST /moderation/report end to end: a real edge over a real control plane and database. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../common/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../../../control-plane/client/index.js';
import { type Harness, STRONG_PASSWORD, startHarness } from '../../../control-plane/test-harness.js';
import { type Edge, startEdge } from '../../index.js';

let h: Harness;
let client: ControlPlaneClient;
let edge: Edge;
let base: string;

async function post(path: string, body: unknown, token?: string) {
  const response = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function signIn(name: string): Promise<{ id: number; token: string }> {
  const email = `${name}@example.com`;
  const registered = await post('/auth/register', { email, username: name, password: STRONG_PASSWORD });
  expect(registered.status).toBe(201);
  const login = await post('/auth/login', { email, password: STRONG_PASSWORD });
  return { id: (registered.body.user as { id: number }).id, token: String(login.body.access_token) };
}

const reportCount = async () => (await h.sql<{ n: number }[]>`select count(*)::int as n from reports`)[0]?.n;

beforeAll(async () => {
  h = await startHarness({ HTTP_HOST: '127.0.0.1', HTTP_PORT: '0' });
  const log = createLogger({ level: 'silent' });
  client = createControlPlaneClient({ address: h.address, apiKey: h.apiKey, log });
  edge = await startEdge({ config: h.config, log, controlPlane: client, blobs: h.ports.blobs });
  base = `http://127.0.0.1:${edge.port}`;
});

afterAll(async () => {
  await edge?.close();
  client?.close();
  await h?.close();
});

describe('POST /moderation/report', () => {
  it('stores a report on a user and answers its id', async () => {
    const reporter = await signIn('reporter');
    const target = await signIn('target');
    const before = await reportCount();
    const reply = await post(
      '/moderation/report',
      { target_type: 'user', target_id: target.id, reason: 'spam' },
      reporter.token,
    );
    expect(reply.status).toBe(201);
    expect(reply.body.report_id).toEqual(expect.any(Number));
    expect(await reportCount()).toBe((before ?? 0) + 1);
  });

  it('refuses bad input with the field named, and anonymous callers, storing nothing', async () => {
    const reporter = await signIn('reporter2');
    const before = await reportCount();
    const badType = await post(
      '/moderation/report',
      { target_type: 'song', target_id: 1, reason: 'x' },
      reporter.token,
    );
    expect(badType.status).toBe(400);
    expect(badType.body.error).toMatchObject({ code: 'invalid_argument', field: 'target_type' });
    const missing = await post(
      '/moderation/report',
      { target_type: 'user', target_id: 987654321, reason: 'x' },
      reporter.token,
    );
    expect(missing.status).toBe(404);
    const anonymous = await post('/moderation/report', { target_type: 'user', target_id: 1, reason: 'x' });
    expect(anonymous.status).toBe(401);
    expect(await reportCount()).toBe(before);
  });
});
