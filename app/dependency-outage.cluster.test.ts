/**
 * Redis and NATS outages in cluster mode, each on a server of the test's own (a redis-server and a
 * nats-server on temp ports and directories, not the machine's), stopped under a running control
 * plane and edge, then started again on the same data.
 *
 * Redis: the services that need it (auth, chat) turn NOT_SERVING with the others still SERVING,
 * /readyz is 503, logins fail fast with 503 until the breaker opens and refuses at once with
 * Retry-After; once it is back everything is SERVING, the breaker closes, and a session
 * acknowledged before the outage still refreshes.
 * NATS: NOT_SERVING and not ready while it is gone (reads still answer), SERVING and ready once it
 * is back, and the bus carries a revocation to the edge again.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, loadConfig, portAcceptsConnections } from '../common/index.js';
import {
  clusterServices,
  clusterTestEnv,
  createTestDatabase,
  freePort,
  type TestDatabase,
} from '../common/testing/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../control-plane/client/index.js';
import { type Platform, startPlatform } from './platform.js';
import { metricValue, signUpAndIn, timedCall } from './testing/index.js';

const log = createLogger({ level: 'silent', name: 'cluster-outage-test' });
const SERVICE_KEY = 'cluster-outage-test-key-0123456789abcdef';
const PASSWORD = 'Correct-Horse-42';

/** A server process of the test's own, restartable on the same port and data directory. */
interface OwnServer {
  url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

async function ownServer(
  scheme: string,
  command: string,
  args: (port: number, dir: string) => string[],
): Promise<OwnServer> {
  const port = await freePort();
  const dir = await mkdtemp(path.join(tmpdir(), `veza-outage-${scheme}-`));
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  const server: OwnServer = {
    url: `${scheme}://127.0.0.1:${port}`,
    async start() {
      const started = spawn(command, args(port, dir), { stdio: 'ignore' });
      child = started;
      exited = new Promise((resolve) => started.once('exit', () => resolve()));
      await expect.poll(() => portAcceptsConnections(port), { timeout: 10_000, interval: 50 }).toBe(true);
    },
    async stop() {
      // SIGTERM: both servers shut down cleanly, writing what they hold to their data directory.
      child?.kill('SIGTERM');
      await exited;
      child = null;
    },
  };
  cleanups.push(async () => {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });
  await server.start();
  return server;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function client(base: string) {
  return (method: string, route: string, options: { token?: string; body?: unknown } = {}) =>
    timedCall(base, method, route, options);
}

/** A control plane and an edge in one cluster-mode process, on `overrides`' Redis or NATS. */
async function startCluster(label: string, overrides: Record<string, string>) {
  // A database per test: each cluster has its own signing keys secret.
  const db: TestDatabase = await createTestDatabase('cluster');
  cleanups.push(() => db.drop());
  const env = {
    ...clusterTestEnv(label, db.url, SERVICE_KEY),
    HEALTH_PROBE_INTERVAL_MS: '100',
    HEALTH_PROBE_TIMEOUT_MS: '500',
    CIRCUIT_BREAKER_RESET_MS: '1500',
    ...overrides,
  };
  const platform: Platform = await startPlatform(
    loadConfig({ ...env, VEZA_ROLES: 'control-plane,signaling' }),
    log,
  );
  cleanups.push(() => platform.close());
  const grpc: ControlPlaneClient = createControlPlaneClient({
    address: `127.0.0.1:${platform.grpcPort}`,
    apiKey: SERVICE_KEY,
    log,
  });
  cleanups.push(() => grpc.close());
  return { env, grpc, http: client(`http://127.0.0.1:${platform.httpPort}`) };
}

describe('dependency outages in cluster mode', () => {
  it('Redis: auth and chat NOT_SERVING, logins fail fast then the breaker opens, all back with sessions kept', async () => {
    const redis = await ownServer('redis', 'redis-server', (port, dir) => [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'yes',
      '--appendfsync',
      'always',
      '--dir',
      dir,
    ]);
    const { grpc, http } = await startCluster('redis-outage', { REDIS_URL: redis.url });
    const user = await signUpAndIn(grpc, 'redis-outage');
    const login = await http('POST', '/auth/login', { body: { email: user.email, password: PASSWORD } });
    expect(login.status).toBe(200);
    const refreshToken = String(login.body.refresh_token);
    expect((await http('GET', '/streams')).status).toBe(200);
    expect((await http('GET', '/readyz')).status).toBe(200);

    await redis.stop();
    await expect
      .poll(() => metricValue('veza_dependency_up', { dependency: 'redis' }), { timeout: 5000, interval: 50 })
      .toBe(0);
    await expect
      .poll(() => grpc.health('veza.auth.AuthService'), { timeout: 5000, interval: 50 })
      .toBe('NOT_SERVING');
    expect(await grpc.health('veza.chat.ChatService')).toBe('NOT_SERVING');
    // What does not need Redis keeps serving.
    expect(await grpc.health('veza.analytics.AnalyticsService')).toBe('SERVING');
    expect(await grpc.health('veza.notification.NotificationService')).toBe('SERVING');
    const notReady = await http('GET', '/readyz');
    expect(notReady.status).toBe(503);
    expect((notReady.body.error as { message: string }).message).toMatch(/NOT_SERVING/);
    // The stream directory does not need Redis: it still answers.
    expect((await http('GET', '/streams')).status).toBe(200);

    let attempts = 0;
    while (
      (await metricValue('veza_circuit_breaker_state', { target: 'control-plane' })) !== 2 &&
      attempts < 40
    ) {
      const refused = await http('POST', '/auth/login', { body: { email: user.email, password: PASSWORD } });
      expect(refused.status).toBe(503);
      // Refused on Redis's own error (no offline queue), never by waiting out the gRPC deadline.
      expect((refused.body.error as { message: string }).message).toMatch(
        /session and rate-limit store is unavailable|circuit open/,
      );
      expect(refused.ms).toBeLessThan(3000);
      attempts++;
    }
    expect(await metricValue('veza_circuit_breaker_state', { target: 'control-plane' })).toBe(2);
    const open = await http('POST', '/auth/login', { body: { email: user.email, password: PASSWORD } });
    expect(open.status).toBe(503);
    expect((open.body.error as { message: string }).message).toMatch(/circuit open/);
    expect(open.ms).toBeLessThan(1000);
    expect(Number(open.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);

    await redis.start();
    await expect
      .poll(() => metricValue('veza_dependency_up', { dependency: 'redis' }), {
        timeout: 10_000,
        interval: 50,
      })
      .toBe(1);
    await expect
      .poll(() => grpc.health('veza.auth.AuthService'), { timeout: 5000, interval: 50 })
      .toBe('SERVING');
    await expect
      .poll(async () => (await http('GET', '/readyz')).status, { timeout: 10_000, interval: 100 })
      .toBe(200);
    expect(await metricValue('veza_circuit_breaker_state', { target: 'control-plane' })).toBe(0);
    // The session acknowledged before the outage is still there: its refresh token rotates.
    const refreshed = await http('POST', '/auth/refresh', { body: { refresh_token: refreshToken } });
    expect(refreshed.status).toBe(200);
    expect(
      (await http('POST', '/auth/login', { body: { email: user.email, password: PASSWORD } })).status,
    ).toBe(200);
  }, 120_000);

  it('media-node registry: StreamService NOT_SERVING while no media node is live, the rest SERVING', async () => {
    const { env, grpc } = await startCluster('registry-outage', {});
    expect(await grpc.health('veza.stream.StreamService')).toBe('NOT_SERVING');
    expect(await grpc.health('veza.auth.AuthService')).toBe('SERVING');
    expect(await grpc.health('')).toBe('SERVING');
    expect(await metricValue('veza_dependency_up', { dependency: 'media-registry' })).toBe(0);

    const mediaDir = await mkdtemp(path.join(tmpdir(), 'veza-outage-media-'));
    cleanups.push(() => rm(mediaDir, { recursive: true, force: true }));
    const media = await startPlatform(
      loadConfig({
        ...env,
        VEZA_ROLES: 'media',
        VEZA_NODE_ID: `outage-media-${Date.now()}`,
        VEZA_DATA_DIR: mediaDir,
        MEDIA_WORKERS: '1',
        MEDIA_LISTEN_IP: '127.0.0.1',
      }),
      log,
    );
    cleanups.push(() => media.close());
    await expect
      .poll(() => grpc.health('veza.stream.StreamService'), { timeout: 10_000, interval: 50 })
      .toBe('SERVING');
    expect(await metricValue('veza_dependency_up', { dependency: 'media-registry' })).toBe(1);

    // The node leaves (its goodbye): nothing can be placed any more.
    await media.close();
    await expect
      .poll(() => grpc.health('veza.stream.StreamService'), { timeout: 10_000, interval: 50 })
      .toBe('NOT_SERVING');
    expect(await grpc.health('veza.auth.AuthService')).toBe('SERVING');
  }, 120_000);

  it('NATS: NOT_SERVING and not ready while it is gone, SERVING and ready again, and the bus carries events again', async () => {
    const nats = await ownServer('nats', 'nats-server', (port, dir) => [
      '-a',
      '127.0.0.1',
      '-p',
      String(port),
      '-js',
      '-sd',
      dir,
    ]);
    const { grpc, http } = await startCluster('nats-outage', {
      NATS_URL: nats.url,
      REDIS_URL: clusterServices.redisUrl,
    });
    const user = await signUpAndIn(grpc, 'nats-outage');
    expect((await http('GET', '/readyz')).status).toBe(200);

    await nats.stop();
    await expect
      .poll(() => metricValue('veza_dependency_up', { dependency: 'nats' }), { timeout: 5000, interval: 50 })
      .toBe(0);
    await expect
      .poll(() => grpc.health('veza.auth.AuthService'), { timeout: 5000, interval: 50 })
      .toBe('NOT_SERVING');
    expect(await grpc.health('veza.notification.NotificationService')).toBe('NOT_SERVING');
    expect(await grpc.health('veza.analytics.AnalyticsService')).toBe('SERVING');
    expect((await http('GET', '/readyz')).status).toBe(503);
    // Reads that need no bus still answer.
    expect((await http('GET', '/streams')).status).toBe(200);

    await nats.start();
    await expect
      .poll(() => metricValue('veza_dependency_up', { dependency: 'nats' }), {
        timeout: 15_000,
        interval: 100,
      })
      .toBe(1);
    await expect
      .poll(() => grpc.health('veza.auth.AuthService'), { timeout: 5000, interval: 50 })
      .toBe('SERVING');
    await expect
      .poll(async () => (await http('GET', '/readyz')).status, { timeout: 10_000, interval: 100 })
      .toBe(200);
    // A logout's invalidation crosses the bus to the edge's token cache before it returns.
    expect((await http('GET', '/auth/validate', { token: user.token })).status).toBe(200);
    expect((await http('POST', '/auth/logout', { token: user.token })).status).toBe(204);
    expect((await http('GET', '/auth/validate', { token: user.token })).status).toBe(401);
  }, 120_000);
});
