/**
 * Failures in a split cluster (control plane, media nodes and edges as separate cluster-mode
 * platforms on the machine's PostgreSQL, Redis and NATS), with the client library on
 * @roamhq/wrtc as the broadcaster and the listener:
 * - a media node that dies: its streams move to a live node and the clients follow by
 *   themselves; with no live node left they end (`media_node_lost`);
 * - an edge that dies: the media node closes its peers once its heartbeats stop, so its stream
 *   ends after the grace period unless the broadcaster comes back through another edge.
 *
 * How a process "dies" in-process: its bus connection is closed first (its heartbeats stop, its
 * requests go unanswered, and no goodbye is ever sent, as when the process is killed or cut off),
 * then what else it holds: a media node's mediasoup workers (its transports are gone), an edge's
 * WebSockets (its clients reconnect, through a load balancer that only knows the live edges).
 *
 * Heartbeats every 200 ms (PRESENCE_HEARTBEAT_MS) make a loss noticed within a second. Runs on
 * this machine share NATS subjects and Redis keys: the media cluster name, node ids and database
 * ids are this run's own.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, loadConfig } from '../common/index.js';
import { clusterTestEnv, createTestDatabase, type TestDatabase } from '../common/testing/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../control-plane/client/index.js';
import {
  Broadcaster,
  Listener,
  SignalingConnection,
  type WebSocketConstructor,
} from '../signaling/client/index.js';
import {
  installWrtcGlobals,
  listenerTap,
  NODE_HANDLER_NAME,
  nodeWebSocket,
  sineSource,
} from '../signaling/client/testing/index.js';
import { type Platform, startPlatform } from './platform.js';
import { signUpAndIn } from './testing/index.js';

installWrtcGlobals();

const WebSocket = nodeWebSocket();
const SERVICE_KEY = 'failover-test-service-key-0123456789';
const GRACE_S = 3;
const log = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', name: 'failover-test' });
const audible = (rms: number) => rms > 100;
const hex = () => randomBytes(4).toString('hex');

let db: TestDatabase;
let dataDir: string;
let shared: Record<string, string>;
let control: Platform;
let client: ControlPlaneClient;
/** Per test, run in reverse after it (clients first, then platforms). */
const cleanups: Array<() => unknown> = [];

const createUser = () => signUpAndIn(client, 'failover');

async function startStream(owner: { token: string }): Promise<{ streamId: number; mediaNodeId: string }> {
  const started = await client.stream.startStream(
    { title: 'Failover', description: '', genre: '', isPublic: true, allowAnonymous: false },
    { token: owner.token },
  );
  return { streamId: started.stream?.streamId ?? 0, mediaNodeId: started.stream?.mediaNodeId ?? '' };
}

const streamInfo = async (streamId: number) => (await client.stream.getStreamInfo({ streamId })).stream;

async function start(roles: 'media' | 'signaling', nodeId: string): Promise<Platform> {
  const platform = await startPlatform(
    loadConfig({
      ...shared,
      VEZA_ROLES: roles,
      VEZA_NODE_ID: nodeId,
      ...(roles === 'media'
        ? // wrtc peers in this process reach loopback; browsers would need the announced address.
          { VEZA_DATA_DIR: dataDir, MEDIA_WORKERS: '1', MEDIA_LISTEN_IP: '127.0.0.1' }
        : { CONTROL_PLANE_ADDRESS: `127.0.0.1:${control.grpcPort}` }),
    }),
    log,
  );
  cleanups.push(() => platform.close());
  return platform;
}
const startMedia = () => start('media', `failover-media-${hex()}`);
const startEdge = (nodeId = `failover-edge-${hex()}`) => start('signaling', nodeId);

/** A media process dies: no goodbye, no answers, and its workers (with every transport) are gone. */
async function crashMedia(node: Platform): Promise<void> {
  await node.ports.bus.close();
  await node.media?.close();
}

const wsUrl = (edge: Platform) => `ws://127.0.0.1:${edge.httpPort}/ws`;

/**
 * A load balancer in front of the edges: every (re)connection goes to the port `target()` names
 * (port 1, where nothing listens, when it has no edge for the client).
 */
function balanced(target: () => number | null): WebSocketConstructor {
  return function Routed(url: string) {
    const routed = new URL(url);
    routed.host = `127.0.0.1:${target() ?? 1}`;
    return new WebSocket(routed.toString());
  } as unknown as WebSocketConstructor;
}

async function goLive(owner: { token: string }, streamId: number, url: string, ws = WebSocket) {
  const source = sineSource();
  cleanups.push(() => source.stop());
  const connection = new SignalingConnection({ url, token: owner.token, WebSocket: ws });
  cleanups.push(() => connection.close());
  await connection.connect();
  const broadcaster = new Broadcaster({ connection, handlerName: NODE_HANDLER_NAME });
  await broadcaster.publish(streamId, source.track);
  return { connection, broadcaster };
}

async function listen(fan: { token: string }, streamId: number, url: string, ws = WebSocket) {
  const connection = new SignalingConnection({ url, token: fan.token, WebSocket: ws });
  cleanups.push(() => connection.close());
  await connection.connect();
  const listener = new Listener({ connection, handlerName: NODE_HANDLER_NAME });
  const tap = listenerTap(listener, await listener.listen(streamId));
  cleanups.push(() => tap.stop());
  return { connection, listener, tap };
}

/** Why the producers of a media node (in this process) closed, in order. */
function producerCloseReasons(node: Platform): string[] {
  const reasons: string[] = [];
  node.media?.on('producerClosed', (event) => reasons.push(event.reason));
  return reasons;
}

/** The media transports a media node (in this process) holds. */
const transportsOn = async (node: Platform) =>
  ((await node.media?.getWorkers()) ?? []).reduce((sum, worker) => sum + worker.transports, 0);

/** The stream's producer on a media node (in this process), null when nobody produces. */
const producerOn = async (node: Platform, streamId: number) =>
  (await node.media?.getStreamInfo(String(streamId)).catch(() => null))?.producerId ?? null;

beforeAll(async () => {
  db = await createTestDatabase('cluster');
  dataDir = await mkdtemp(path.join(tmpdir(), 'veza-failover-'));
  for (const sequence of ['users_id_seq', 'streams_id_seq', 'chat_rooms_id_seq']) {
    await db.sql`select setval(${sequence}, ${randomInt(1_000_000, 2 ** 40)})`;
  }
  shared = {
    ...clusterTestEnv('failover', db.url, SERVICE_KEY),
    PRESENCE_HEARTBEAT_MS: '200',
    STREAM_GRACE_S: String(GRACE_S),
  };
  control = await startPlatform(loadConfig({ ...shared, VEZA_ROLES: 'control-plane' }), log);
  client = createControlPlaneClient({ address: `127.0.0.1:${control.grpcPort}`, apiKey: SERVICE_KEY, log });
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(async () => {
  client?.close();
  await control?.close();
  await db?.drop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('a media node that dies without a goodbye', () => {
  it('moves its stream to the live node; broadcaster and listener rejoin by themselves and the audio comes back', async () => {
    const a = await startMedia();
    const owner = await createUser();
    const fan = await createUser();
    const { streamId, mediaNodeId } = await startStream(owner);
    expect(mediaNodeId).toBe(a.config.nodeId);
    const b = await startMedia();
    const edge = await startEdge();

    const live = await goLive(owner, streamId, wsUrl(edge));
    const heard = await listen(fan, streamId, wsUrl(edge));
    await heard.tap.waitForFrames(50, audible);
    expect(await producerOn(b, streamId)).toBeNull();

    const restarted = heard.connection.next('workerRestarted');
    const broadcasterBack = live.broadcaster.next('reconnected');
    const listenerBack = heard.listener.next('reconnected');
    await crashMedia(a);

    expect((await restarted)[0]).toEqual({ streamId, reconnect: true });
    await broadcasterBack;
    await listenerBack;
    heard.tap.reset();
    await heard.tap.waitForFrames(50, audible);
    expect(await streamInfo(streamId)).toMatchObject({ status: 'live', mediaNodeId: b.config.nodeId });
    // The new node opened the stream when they joined, and carries both of them.
    expect(await producerOn(b, streamId)).not.toBeNull();
    const [worker] = (await b.media?.getWorkers()) ?? [];
    expect(worker).toMatchObject({ producers: 1, consumers: 1 });
    expect(live.broadcaster.state).toBe('live');
    expect(heard.listener.state).toBe('live');

    await client.stream.stopStream({ streamId, reason: '' }, { token: owner.token });
  }, 60_000);

  it('keeps the stream on a node that comes back as a new process (same node id) when it is the only one; the clients follow', async () => {
    const nodeId = `failover-media-${hex()}`;
    const first = await start('media', nodeId);
    const owner = await createUser();
    const fan = await createUser();
    const { streamId } = await startStream(owner);
    const edge = await startEdge();
    const live = await goLive(owner, streamId, wsUrl(edge));
    const heard = await listen(fan, streamId, wsUrl(edge));
    await heard.tap.waitForFrames(20, audible);

    // The process dies and is started again at once with the same VEZA_NODE_ID, without the
    // stream's router: the new run's heartbeat (another boot id) tells the control plane.
    const restarted = heard.connection.next('workerRestarted');
    const broadcasterBack = live.broadcaster.next('reconnected');
    const listenerBack = heard.listener.next('reconnected');
    await first.ports.bus.close();
    const second = await start('media', nodeId);
    await first.media?.close();

    expect((await restarted)[0]).toEqual({ streamId, reconnect: true });
    await broadcasterBack;
    await listenerBack;
    heard.tap.reset();
    await heard.tap.waitForFrames(20, audible);
    expect(await streamInfo(streamId)).toMatchObject({ status: 'live', mediaNodeId: nodeId });
    expect(await producerOn(second, streamId)).not.toBeNull();

    await client.stream.stopStream({ streamId, reason: '' }, { token: owner.token });
  }, 60_000);

  it('ends its stream with reason media_node_lost when no other node is live, and the listener sees it end', async () => {
    const only = await startMedia();
    const owner = await createUser();
    const fan = await createUser();
    const { streamId, mediaNodeId } = await startStream(owner);
    expect(mediaNodeId).toBe(only.config.nodeId);
    const edge = await startEdge();
    await goLive(owner, streamId, wsUrl(edge));
    const heard = await listen(fan, streamId, wsUrl(edge));
    await heard.tap.waitForFrames(20, audible);

    const ended = heard.listener.next('ended');
    await crashMedia(only);
    expect((await ended)[0]).toEqual({ reason: 'media_node_lost' });
    expect(heard.listener.state).toBe('ended');
    expect(await streamInfo(streamId)).toMatchObject({
      status: 'ended',
      endReason: 'media_node_lost',
      mediaNodeId: only.config.nodeId,
    });
  }, 60_000);
});

describe('an edge that dies without a clean close', () => {
  it("has its peers closed by the media node once its heartbeats stop, so its broadcaster's stream ends after the grace period on another edge", async () => {
    const media = await startMedia();
    const reasons = producerCloseReasons(media);
    const owner = await createUser();
    const fan = await createUser();
    const { streamId } = await startStream(owner);
    const doomed = await startEdge();
    await startEdge();
    let port = doomed.httpPort;
    await goLive(
      owner,
      streamId,
      wsUrl(doomed),
      balanced(() => port),
    );
    const heard = await listen(
      fan,
      streamId,
      wsUrl(doomed),
      balanced(() => port),
    );
    await heard.tap.waitForFrames(20, audible);
    expect(await transportsOn(media)).toBe(2);

    // The edge dies: off the bus first (its heartbeats stop, and it can no longer close its
    // peers), then its WebSockets go. Its clients find no edge to reconnect to and keep their
    // media transports open, as clients whose network went would: mediasoup has no ICE consent
    // timeout, so only the media node's presence watch can free them.
    await doomed.ports.bus.close();
    port = null;
    await doomed.close();
    await expect.poll(() => producerOn(media, streamId), { timeout: 10_000, interval: 50 }).toBeNull();
    const closedAt = Date.now();
    expect(reasons).toEqual(['edge-lost']);
    await expect.poll(() => transportsOn(media), { timeout: 5_000, interval: 50 }).toBe(0);

    // The other edge started the grace period when the producer went (nobody else would): it
    // asks the media node, finds nobody producing, and ends the stream.
    await expect
      .poll(async () => (await streamInfo(streamId))?.status, {
        timeout: GRACE_S * 1000 + 10_000,
        interval: 100,
      })
      .toBe('ended');
    expect(Date.now() - closedAt).toBeGreaterThanOrEqual(GRACE_S * 1000 - 500);
    expect(await streamInfo(streamId)).toMatchObject({ endReason: 'broadcaster_disconnected' });
  }, 60_000);

  it('ends the stream after the grace period when the broadcaster closes while its edge is dead', async () => {
    const media = await startMedia();
    const owner = await createUser();
    const { streamId } = await startStream(owner);
    const doomed = await startEdge();
    await startEdge();
    const live = await goLive(owner, streamId, wsUrl(doomed));
    await expect.poll(() => producerOn(media, streamId)).not.toBeNull();

    // The edge is cut off, and the broadcaster gives up: their transport closes (DTLS close),
    // which the dead edge cannot act on.
    await doomed.ports.bus.close();
    live.connection.close();
    await doomed.close();
    await expect.poll(() => producerOn(media, streamId), { timeout: 10_000, interval: 50 }).toBeNull();
    const closedAt = Date.now();
    await expect
      .poll(async () => (await streamInfo(streamId))?.status, {
        timeout: GRACE_S * 1000 + 10_000,
        interval: 100,
      })
      .toBe('ended');
    expect(Date.now() - closedAt).toBeGreaterThanOrEqual(GRACE_S * 1000 - 500);
    expect(await streamInfo(streamId)).toMatchObject({ endReason: 'broadcaster_disconnected' });
    await expect.poll(() => transportsOn(media), { timeout: 5_000, interval: 50 }).toBe(0);
  }, 60_000);

  it('keeps the stream live when the broadcaster comes back through another edge within the grace period', async () => {
    const media = await startMedia();
    const owner = await createUser();
    const fan = await createUser();
    const { streamId } = await startStream(owner);
    const reasons = producerCloseReasons(media);
    const doomed = await startEdge();
    const other = await startEdge();
    let port = doomed.httpPort;
    const live = await goLive(
      owner,
      streamId,
      wsUrl(doomed),
      balanced(() => port),
    );
    const heard = await listen(fan, streamId, wsUrl(other));
    await heard.tap.waitForFrames(20, audible);
    const doomedPeer = (await media.media?.getStreamInfo(String(streamId)))?.broadcasterPeerId;
    expect(doomedPeer).toBeTruthy();

    // The edge is cut off: the media node forgets it and closes the broadcaster's peer, and the
    // other edges start the grace period.
    await doomed.ports.bus.close();
    await expect.poll(() => producerOn(media, streamId), { timeout: 10_000, interval: 50 }).toBeNull();
    const closedAt = Date.now();
    expect(reasons).toEqual(['edge-lost']);

    // Then it goes down; the load balancer sends the broadcaster's reconnection to the other edge.
    port = other.httpPort;
    const back = live.broadcaster.next('reconnected');
    await doomed.close();
    await back;
    expect(Date.now() - closedAt).toBeLessThan(GRACE_S * 1000);
    const info = await media.media?.getStreamInfo(String(streamId));
    expect(info?.producerId).not.toBeNull();
    expect(info?.broadcasterPeerId).not.toBe(doomedPeer);

    // A negative check: nothing may end the stream once the grace period has passed.
    await new Promise((resolve) =>
      setTimeout(resolve, Math.max(0, closedAt + GRACE_S * 1000 + 1_000 - Date.now())),
    );
    expect(await streamInfo(streamId)).toMatchObject({ status: 'live' });
    expect(live.broadcaster.state).toBe('live');
    heard.tap.reset();
    await heard.tap.waitForFrames(20, audible);

    await client.stream.stopStream({ streamId, reason: '' }, { token: owner.token });
  }, 60_000);

  it("gives a restarted edge (same node id) peer ids of its own, and its previous run's peers go", async () => {
    const media = await startMedia();
    const reasons = producerCloseReasons(media);
    const owner = await createUser();
    const { streamId } = await startStream(owner);
    const edgeId = `failover-edge-${hex()}`;
    const first = await startEdge(edgeId);
    let port = first.httpPort;
    const live = await goLive(
      owner,
      streamId,
      wsUrl(first),
      balanced(() => port),
    );
    const firstPeer = (await media.media?.getStreamInfo(String(streamId)))?.broadcasterPeerId ?? '';
    expect(firstPeer.startsWith(`${edgeId}:`)).toBe(true);

    // The edge crashes and comes back as a new process with the same VEZA_NODE_ID, whose connection
    // ids start from 1 again; the broadcaster's reconnection lands on it.
    await first.ports.bus.close();
    port = null;
    await first.close();
    const back = live.broadcaster.next('reconnected');
    const second = await startEdge(edgeId);
    port = second.httpPort;
    await back;

    const info = await media.media?.getStreamInfo(String(streamId));
    const secondPeer = info?.broadcasterPeerId ?? '';
    expect(secondPeer.startsWith(`${edgeId}:`)).toBe(true);
    // Same edge, same connection number, same join number: only the boot id tells the runs apart.
    expect(secondPeer.split(':').slice(2)).toEqual(firstPeer.split(':').slice(2));
    expect(secondPeer).not.toBe(firstPeer);
    expect(info?.producerId).not.toBeNull();
    // The previous run's peer is gone (its producer with reason edge-lost, or replaced by the claim
    // of the new one); the new one is the only broadcaster transport left.
    expect(reasons.length).toBeGreaterThanOrEqual(1);
    await expect.poll(() => transportsOn(media), { timeout: 5_000, interval: 50 }).toBe(1);
    expect(live.broadcaster.state).toBe('live');

    await client.stream.stopStream({ streamId, reason: '' }, { token: owner.token });
  }, 60_000);
});
