/**
 * Live audio with the roles split as docker-compose.yml runs them: a control-plane-only, a
 * media-only and a signaling-only platform in cluster mode on the machine's PostgreSQL, Redis and
 * NATS. The control plane places streams on the media node it heard from over the bus; a
 * broadcaster and a listener (the client library on @roamhq/wrtc) go live through the edge.
 *
 * Runs on this machine share NATS subjects and Redis keys: the media cluster name, node ids and
 * database ids (users, streams, chat rooms) are this run's own.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createLogger, loadConfig } from '../common/index.js';
import { clusterTestEnv, createTestDatabase, type TestDatabase } from '../common/testing/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../control-plane/client/index.js';
import { Broadcaster, Listener, SignalingConnection } from '../signaling/client/index.js';
import {
  audioTap,
  installWrtcGlobals,
  NODE_HANDLER_NAME,
  nodeWebSocket,
  sineSource,
} from '../signaling/client/testing/index.js';
import { type Platform, startPlatform } from './platform.js';
import { signUpAndIn } from './testing/index.js';

installWrtcGlobals();

const WebSocket = nodeWebSocket();
const SERVICE_KEY = 'split-cluster-test-service-key-0123456789';
const log = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', name: 'split-cluster-test' });
const audible = (rms: number) => rms > 100;

let db: TestDatabase;
let dataDir: string;
let shared: Record<string, string>;
let control: Platform;
let edge: Platform;
let media: Platform | null = null;
let client: ControlPlaneClient;
const cleanups: Array<() => unknown> = [];

interface User {
  token: string;
}

const createUser = () => signUpAndIn(client, 'split');

const startStream = (owner: User) =>
  client.stream.startStream(
    { title: 'Split cluster', description: '', genre: '', isPublic: true, allowAnonymous: false },
    { token: owner.token },
  );

async function startMedia(): Promise<Platform> {
  const started = await startPlatform(
    loadConfig({
      ...shared,
      VEZA_ROLES: 'media',
      VEZA_NODE_ID: `split-media-${randomBytes(4).toString('hex')}`,
      VEZA_DATA_DIR: dataDir,
      MEDIA_WORKERS: '1',
      // wrtc peers in this process reach loopback; browsers would need the announced address.
      MEDIA_LISTEN_IP: '127.0.0.1',
    }),
    log,
  );
  media = started;
  return started;
}

beforeAll(async () => {
  db = await createTestDatabase('cluster');
  dataDir = await mkdtemp(path.join(tmpdir(), 'veza-split-'));
  for (const sequence of ['users_id_seq', 'streams_id_seq', 'chat_rooms_id_seq']) {
    await db.sql`select setval(${sequence}, ${randomInt(1_000_000, 2 ** 40)})`;
  }
  shared = clusterTestEnv('split', db.url, SERVICE_KEY);
  control = await startPlatform(loadConfig({ ...shared, VEZA_ROLES: 'control-plane' }), log);
  const address = `127.0.0.1:${control.grpcPort}`;
  edge = await startPlatform(
    loadConfig({
      ...shared,
      VEZA_ROLES: 'signaling',
      VEZA_NODE_ID: `split-edge-${randomBytes(4).toString('hex')}`,
      CONTROL_PLANE_ADDRESS: address,
    }),
    log,
  );
  client = createControlPlaneClient({ address, apiKey: SERVICE_KEY, log });
});

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  client?.close();
  for (const platform of [edge, media, control]) await platform?.close();
  await db?.drop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('live audio with control plane, media and signaling in separate cluster-mode platforms', () => {
  it('refuses to start a stream while no media node is alive, with UNAVAILABLE, and creates nothing', async () => {
    const owner = await createUser();
    await expect(startStream(owner)).rejects.toMatchObject({
      code: 'unavailable',
      message: expect.stringMatching(/no media node is available/),
    });
    // Through the edge, as the studio page calls it.
    const response = await fetch(`http://127.0.0.1:${edge.httpPort}/stream/start`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${owner.token}` },
      body: JSON.stringify({ title: 'No media' }),
    });
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({
      error: { code: 'unavailable', message: expect.stringMatching(/no media node is available/) },
    });
    const [row] = await db.sql<{ count: number }[]>`select count(*)::int as count from streams`;
    expect(row?.count).toBe(0);
  });

  it('places the stream on the media node, and the listener hears the broadcaster over RTP', async () => {
    const node = await startMedia();
    const owner = await createUser();
    const fan = await createUser();
    // The node announced itself before startPlatform returned; placement waits a moment for that news.
    const started = await startStream(owner);
    const streamId = started.stream?.streamId ?? 0;
    expect(started.stream?.mediaNodeId).toBe(node.config.nodeId);

    const wsUrl = `ws://127.0.0.1:${edge.httpPort}/ws`;
    const source = sineSource();
    cleanups.push(() => source.stop());
    const ownerConnection = new SignalingConnection({ url: wsUrl, token: owner.token, WebSocket });
    cleanups.push(() => ownerConnection.close());
    await ownerConnection.connect();
    const broadcaster = new Broadcaster({ connection: ownerConnection, handlerName: NODE_HANDLER_NAME });
    await broadcaster.publish(streamId, source.track);

    const fanConnection = new SignalingConnection({ url: wsUrl, token: fan.token, WebSocket });
    cleanups.push(() => fanConnection.close());
    await fanConnection.connect();
    const listener = new Listener({ connection: fanConnection, handlerName: NODE_HANDLER_NAME });
    const tap = audioTap(await listener.listen(streamId));
    cleanups.push(() => tap.stop());
    // Decoded sine frames: RTP from the broadcaster, through the SFU in the media process.
    await tap.waitForFrames(50, audible);
    const stats = await listener.getStats();
    expect(stats.consumers[0]).toMatchObject({ paused: false, score: expect.any(Number) });
    expect(stats.consumers[0]?.bitrateBps).toBeGreaterThan(0);
    const [hosted] = await node.media!.getWorkers();
    expect(hosted?.consumers).toBe(1);

    await client.stream.stopStream({ streamId, reason: '' }, { token: owner.token });
  });

  it('stops placing streams on a media node as soon as it shuts down (goodbye), with UNAVAILABLE', async () => {
    const owner = await createUser();
    // The previous test's node is still alive and listed.
    await expect(startStream(owner)).resolves.toMatchObject({
      stream: { mediaNodeId: media?.config.nodeId },
    });
    await media?.close();
    media = null;
    // Forgetting a silent node takes three heartbeats (6 s): well before that, the goodbye did it.
    await vi.waitFor(
      () =>
        expect(startStream(owner)).rejects.toMatchObject({
          code: 'unavailable',
          message: expect.stringMatching(/no media node is available/),
        }),
      { timeout: 4_000, interval: 50 },
    );
  });
});
