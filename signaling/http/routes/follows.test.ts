/**
 * The follow REST routes end to end: a real edge calling a real control plane over gRPC, over a
 * fresh database. The "went live" notification itself is the notifications module's (tested there);
 * here: the routes reach the rpcs, keep the rules and give the usual error shapes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../common/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../../../control-plane/client/index.js';
import { type Harness, STRONG_PASSWORD, startHarness } from '../../../control-plane/test-harness.js';
import { type Edge, startEdge } from '../../index.js';

let h: Harness;
let client: ControlPlaneClient;
let edge: Edge;
let base: string;
let seq = 0;

interface ErrorShape {
  error: { code: string; message: string; field?: string };
}

async function call(method: string, path: string, token?: string) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : null) as unknown };
}

async function account(prefix: string) {
  seq += 1;
  const email = `${prefix}${seq}@example.com`;
  const username = `${prefix}_${seq}`;
  const post = (path: string, body: unknown) =>
    fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    }).then(async (response) => ({ status: response.status, body: (await response.json()) as never }));
  const registered = await post('/auth/register', { email, username, password: STRONG_PASSWORD });
  expect(registered.status).toBe(201);
  const login = await post('/auth/login', { email, password: STRONG_PASSWORD });
  expect(login.status).toBe(200);
  const { user, access_token } = login.body as { user: { id: number }; access_token: string };
  return { userId: user.id, username, token: access_token };
}

beforeAll(async () => {
  h = await startHarness({ HTTP_HOST: '127.0.0.1', HTTP_PORT: '0' });
  const log = createLogger({ level: 'silent' });
  client = createControlPlaneClient({ address: h.address, apiKey: h.apiKey, log });
  edge = await startEdge({
    config: h.config,
    log,
    controlPlane: client,
    blobs: h.ports.blobs,
    routerRtpCapabilities: async () => ({ codecs: [], headerExtensions: [] }),
  });
  base = `http://127.0.0.1:${edge.port}`;
});

afterAll(async () => {
  await edge?.close();
  client?.close();
  await h?.close();
});

describe('PUT/DELETE /users/:id/follow and GET /me/following', () => {
  it('follows, lists, follows again harmlessly and unfollows', async () => {
    const [fan, dj] = await Promise.all([account('fan'), account('dj')]);
    expect((await call('PUT', `/users/${dj.userId}/follow`, fan.token)).status).toBe(204);
    expect((await call('PUT', `/users/${dj.userId}/follow`, fan.token)).status).toBe(204);
    const listed = await call('GET', '/me/following', fan.token);
    expect(listed.status).toBe(200);
    expect(listed.body).toEqual({
      following: [{ user_id: dj.userId, username: dj.username, followed_at: expect.any(String) }],
    });
    expect((await call('DELETE', `/users/${dj.userId}/follow`, fan.token)).status).toBe(204);
    expect((await call('GET', '/me/following', fan.token)).body).toEqual({ following: [] });
  });

  it('refuses bad input with the usual error shapes, and records nothing', async () => {
    const fan = await account('fan');
    const cases: Array<[string, string, string | undefined, number, string]> = [
      ['PUT', '/users/12/follow', undefined, 401, 'unauthenticated'],
      ['GET', '/me/following', undefined, 401, 'unauthenticated'],
      ['PUT', '/users/abc/follow', fan.token, 400, 'invalid_argument'],
      ['PUT', `/users/${fan.userId}/follow`, fan.token, 400, 'invalid_argument'],
      ['PUT', '/users/987654321/follow', fan.token, 404, 'not_found'],
    ];
    for (const [method, path, token, status, code] of cases) {
      const reply = await call(method, path, token);
      expect({ path, status: reply.status }).toEqual({ path, status });
      expect((reply.body as ErrorShape).error.code).toBe(code);
    }
    expect((await call('PUT', '/users/abc/follow', fan.token)).body).toMatchObject({
      error: { message: expect.stringMatching(/"id".*not a user id/), field: 'id' },
    });
    expect((await call('GET', '/me/following', fan.token)).body).toEqual({ following: [] });
  });
});
