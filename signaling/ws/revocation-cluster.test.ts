/**
 * Revocation across a cluster: two control planes and two edges, each a cluster-mode platform of
 * its own on the machine's PostgreSQL, Redis and NATS, every one of them answering token checks
 * from its cache. Once a logout, a refresh-token reuse or an administrator's revocation has
 * returned, the session's token is refused at once by every control plane (ValidateToken, a
 * JWT-protected rpc) and every edge (handshake, `auth.refresh`), and the session's open sockets
 * on both edges are already closed with 4403; a role taken away applies on every control plane
 * at once. The assertions run right after the call returns: no waiting, no retry. (Here all four
 * run in one process, so the bus is quick; that the call waited for all four acknowledgements is
 * checked as well, on the revoking control plane's count of acks received in time.)
 *
 * The caches are primed first, until a repeated check is answered from memory, so what is
 * tested is the invalidation reaching them and not a cold read.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Platform, startPlatform } from '../../app/index.js';
import { signUpAndIn, type TestUser } from '../../app/testing/index.js';
import { createLogger, loadConfig, metricsRegistry } from '../../common/index.js';
import { clusterTestEnv, createTestDatabase, type TestDatabase } from '../../common/testing/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../../control-plane/client/index.js';
import { CLOSE_CODES } from '../protocol/index.js';
import { RawClient, rawHandshake } from './test-clients.js';

const SERVICE_KEY = 'revocation-cluster-test-service-key-0123456789';
const PASSWORD = 'Correct-Horse-42';
const log = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', name: 'revocation-test' });

let db: TestDatabase;
let dataDir: string;
const controlPlanes: Platform[] = [];
const edges: Platform[] = [];
const clients: ControlPlaneClient[] = [];
const cleanups: Array<() => void> = [];

const baseUrl = (edge: Platform) => `http://127.0.0.1:${edge.httpPort}`;
const wsUrl = (edge: Platform) => `ws://127.0.0.1:${edge.httpPort}/ws`;

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const values = (await metricsRegistry().getSingleMetric(name)?.get())?.values ?? [];
  return values
    .filter((value) => Object.entries(labels).every(([key, wanted]) => value.labels[key] === wanted))
    .reduce((sum, value) => sum + value.value, 0);
}

const VALIDATE_TOKEN = 'veza.auth.AuthService/ValidateToken';
const acks = () => metric('veza_auth_invalidation_acks_total');

beforeAll(async () => {
  db = await createTestDatabase('cluster');
  dataDir = await mkdtemp(path.join(tmpdir(), 'veza-revocation-'));
  // Ids of this run's own, since runs share NATS subjects and Redis keys.
  await db.sql`select setval('users_id_seq', ${randomInt(1_000_000, 2 ** 40)})`;
  const shared = {
    ...clusterTestEnv('revoke', db.url, SERVICE_KEY),
    VEZA_DATA_DIR: dataDir,
    PRESENCE_HEARTBEAT_MS: '500',
  };
  const run = randomBytes(3).toString('hex');
  for (const n of [1, 2]) {
    controlPlanes.push(
      await startPlatform(
        loadConfig({ ...shared, VEZA_ROLES: 'control-plane', VEZA_NODE_ID: `revoke-cp${n}-${run}` }),
        log,
      ),
    );
  }
  for (const [n, controlPlane] of controlPlanes.entries()) {
    const address = `127.0.0.1:${controlPlane.grpcPort}`;
    clients.push(createControlPlaneClient({ address, apiKey: SERVICE_KEY, log }));
    edges.push(
      await startPlatform(
        loadConfig({
          ...shared,
          VEZA_ROLES: 'signaling',
          VEZA_NODE_ID: `revoke-edge${n + 1}-${run}`,
          CONTROL_PLANE_ADDRESS: address,
        }),
        log,
      ),
    );
  }
});

afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

afterAll(async () => {
  for (const client of clients) client.close();
  for (const platform of [...edges, ...controlPlanes].reverse()) await platform.close();
  await db?.drop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** A new login session of `account`, with its refresh token. */
async function signIn(account: TestUser, via = clients[0]!) {
  const session = await via.auth.authenticate({
    email: account.email,
    password: PASSWORD,
    deviceId: 'test',
    ipAddress: '127.0.0.1',
  });
  return { token: session.accessToken, refreshToken: session.refreshToken };
}

async function openSocket(edge: Platform, token: string): Promise<RawClient> {
  const client = await RawClient.open(wsUrl(edge), `v=1&token=${encodeURIComponent(token)}`);
  cleanups.push(() => client.close());
  expect(client.open).toBe(true);
  return client;
}

/**
 * Until every control plane and edge answers `token` from its cache (a repeated check loads
 * nothing / asks no control plane): a holder reads through for one heartbeat interval after it
 * announced itself, and the test must exercise the caches.
 */
async function primeCaches(token: string): Promise<void> {
  for (const client of clients) {
    await vi.waitFor(
      async () => {
        await client.auth.validateToken({ token });
        const loads = await metric('veza_auth_cache_loads_total');
        await client.auth.validateToken({ token });
        expect(await metric('veza_auth_cache_loads_total')).toBe(loads);
      },
      { timeout: 10_000, interval: 100 },
    );
  }
  for (const edge of edges) {
    await vi.waitFor(
      async () => {
        expect((await rawHandshake(baseUrl(edge), `v=1&token=${token}`)).status).toBe(101);
        const asked = await metric('veza_grpc_requests_total', { method: VALIDATE_TOKEN });
        expect((await rawHandshake(baseUrl(edge), `v=1&token=${token}`)).status).toBe(101);
        expect(await metric('veza_grpc_requests_total', { method: VALIDATE_TOKEN })).toBe(asked);
      },
      { timeout: 10_000, interval: 100 },
    );
  }
}

/** The session's sockets on each edge, and a socket of another session of the same user on each. */
async function openEverywhere(token: string, otherToken: string) {
  const doomed: RawClient[] = [];
  const bystanders: RawClient[] = [];
  for (const edge of edges) {
    doomed.push(await openSocket(edge, token));
    bystanders.push(await openSocket(edge, otherToken));
  }
  return { doomed, bystanders };
}

const sessionRevoked = { code: 'unauthenticated', message: 'invalid token: session revoked' };

/**
 * Run right after the revoking call returned: every control plane and edge refuses `token`, and
 * the session's sockets are closed already (the edges closed them before acknowledging).
 */
async function expectRefusedEverywhere(
  token: string,
  sockets: { doomed: RawClient[]; bystanders: RawClient[] },
  closedBefore: number,
): Promise<void> {
  // Counted by each edge's close handler, which uWS runs inside the edge's end(): before its ack.
  expect(await metric('veza_ws_closed_total', { cause: 'session_revoked' })).toBe(closedBefore + 2);
  for (const client of clients) {
    await expect(client.auth.validateToken({ token })).rejects.toMatchObject(sessionRevoked);
    await expect(client.auth.getUserInfo({ userId: 0 }, { token })).rejects.toMatchObject(sessionRevoked);
    await expect(
      client.stream.startStream(
        { title: 'Refused', description: '', genre: '', isPublic: true, allowAnonymous: false },
        { token },
      ),
    ).rejects.toMatchObject(sessionRevoked);
  }
  for (const [n, edge] of edges.entries()) {
    const handshake = await rawHandshake(baseUrl(edge), `v=1&token=${token}`);
    expect(handshake.status).toBe(401);
    expect(JSON.parse(handshake.body)).toEqual({ error: sessionRevoked });
    expect(await sockets.bystanders[n]!.request('auth.refresh', { token })).toMatchObject({
      ok: false,
      error: sessionRevoked,
    });
    expect(sockets.bystanders[n]!.open).toBe(true);
  }
  for (const socket of sockets.doomed) {
    expect(await socket.closed).toEqual({
      code: CLOSE_CODES.sessionRevoked,
      reason: expect.stringMatching(/revoked/),
    });
  }
}

describe('a revocation reaches every control plane and edge before the revoking call returns', () => {
  it('logout (POST /auth/logout through one edge)', async () => {
    const account = await signUpAndIn(clients[0]!, 'logout');
    const session = await signIn(account, clients[1]);
    const other = await signIn(account);
    const sockets = await openEverywhere(session.token, other.token);
    await primeCaches(session.token);
    const closedBefore = await metric('veza_ws_closed_total', { cause: 'session_revoked' });
    const acksBefore = await acks();

    const response = await fetch(`${baseUrl(edges[0]!)}/auth/logout`, {
      method: 'POST',
      headers: { authorization: `Bearer ${session.token}` },
    });
    expect(response.status).toBe(204);
    expect(await acks()).toBe(acksBefore + 4);
    await expectRefusedEverywhere(session.token, sockets, closedBefore);
    // The user's other session is untouched everywhere.
    for (const client of clients)
      await expect(client.auth.validateToken({ token: other.token })).resolves.toBeTruthy();
  });

  it('refresh-token reuse (POST /auth/refresh through the other edge)', async () => {
    const account = await signUpAndIn(clients[1]!, 'reuse');
    const first = await signIn(account);
    const rotated = await clients[1]!.auth.refreshToken({
      refreshToken: first.refreshToken,
      deviceId: 'test',
      ipAddress: '127.0.0.1',
    });
    const other = await signIn(account);
    const sockets = await openEverywhere(rotated.accessToken, other.token);
    await primeCaches(rotated.accessToken);
    const closedBefore = await metric('veza_ws_closed_total', { cause: 'session_revoked' });
    const acksBefore = await acks();

    const response = await fetch(`${baseUrl(edges[1]!)}/auth/refresh`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token: first.refreshToken }),
    });
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({
      error: { code: 'unauthenticated', message: 'refresh token reuse detected; session revoked' },
    });
    expect(await acks()).toBe(acksBefore + 4);
    await expectRefusedEverywhere(rotated.accessToken, sockets, closedBefore);
  });

  it("an administrator's revocation (POST /admin/users/:id/sessions/revoke)", async () => {
    const admin = await signUpAndIn(clients[0]!, 'admin', { roles: ['admin'], sql: db.sql });
    const account = await signUpAndIn(clients[0]!, 'victim');
    const session = await signIn(account);
    // Another user's socket on each edge stays open: only the victim's sessions end.
    const bystander = await signUpAndIn(clients[1]!, 'bystander');
    const sockets = await openEverywhere(session.token, bystander.token);
    await primeCaches(session.token);
    const closedBefore = await metric('veza_ws_closed_total', { cause: 'session_revoked' });
    const acksBefore = await acks();

    const response = await fetch(`${baseUrl(edges[1]!)}/admin/users/${account.userId}/sessions/revoke`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin.token}` },
    });
    expect(response.status).toBe(200);
    expect(await acks()).toBe(acksBefore + 4);
    const body = (await response.json()) as { revoked_session_ids: string[] };
    // signUpAndIn's session and the one above.
    expect(body.revoked_session_ids).toHaveLength(2);
    // The victim's first session (signUpAndIn's) is refused as well; only one socket per edge was open.
    for (const client of clients) {
      await expect(client.auth.validateToken({ token: account.token })).rejects.toMatchObject(sessionRevoked);
    }
    // The bystanders' sockets belong to another user: auth.refresh with this token would be
    // permission_denied before its session is looked at, so the handshake stands for the edge's check.
    for (const [n, edge] of edges.entries()) {
      const handshake = await rawHandshake(baseUrl(edge), `v=1&token=${session.token}`);
      expect(handshake.status).toBe(401);
      expect(JSON.parse(handshake.body)).toEqual({ error: sessionRevoked });
      expect(sockets.bystanders[n]!.open).toBe(true);
    }
    expect(await metric('veza_ws_closed_total', { cause: 'session_revoked' })).toBe(closedBefore + 2);
    for (const client of clients) {
      await expect(client.auth.validateToken({ token: session.token })).rejects.toMatchObject(sessionRevoked);
      await expect(client.auth.getUserInfo({ userId: 0 }, { token: session.token })).rejects.toMatchObject(
        sessionRevoked,
      );
    }
    for (const socket of sockets.doomed) {
      expect(await socket.closed).toMatchObject({ code: CLOSE_CODES.sessionRevoked });
    }
  });

  it('a role taken away by an administrator applies on every control plane at once', async () => {
    const admin = await signUpAndIn(clients[1]!, 'roles-admin', { roles: ['admin'], sql: db.sql });
    const account = await signUpAndIn(clients[0]!, 'demoted');
    await primeCaches(account.token);
    for (const client of clients) {
      expect((await client.auth.validateToken({ token: account.token })).userInfo?.roles).toContain(
        'broadcaster',
      );
    }
    const acksBefore = await acks();

    const response = await fetch(`${baseUrl(edges[0]!)}/admin/users/${account.userId}/roles`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ role: 'broadcaster', granted: false }),
    });
    expect(response.status).toBe(200);
    expect(await acks()).toBe(acksBefore + 4);
    for (const client of clients) {
      const validated = await client.auth.validateToken({ token: account.token });
      expect(validated.userInfo?.roles).toEqual(['listener']);
      // The token still says "broadcaster"; the interceptor answers with the stored roles.
      await expect(
        client.stream.startStream(
          { title: 'Demoted', description: '', genre: '', isPublic: true, allowAnonymous: false },
          { token: account.token },
        ),
      ).rejects.toMatchObject({
        code: 'permission_denied',
        message: 'starting a stream needs the broadcaster role',
      });
    }
    expect(await metric('veza_auth_invalidation_ack_timeouts_total')).toBe(0);
  });
});
