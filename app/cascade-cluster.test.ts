/**
 * Cascaded fan-out, end to end (issue 12's acceptance): three media nodes as separate processes
 * (`node app/main.ts`, VEZA_ROLES=media), each listening on and announcing its own address
 * (127.0.0.2, .3, ...), a control plane and an edge in cluster mode, on the machine's PostgreSQL,
 * Redis and NATS, with `MEDIA_NODE_MAX_LISTENERS=1`. The clients are the client library on
 * @roamhq/wrtc, the broadcaster sending a 440 Hz sine.
 *
 * 1. Three listeners of one broadcast land on the three nodes (the origin, then two nodes added to
 *    the stream's tree, each pulling it from the one above) and each hears the sine.
 *    At MEDIA_RELAY_FANOUT=1 the tree is a chain: origin -> middle relay -> last relay.
 * 2. The origin's listener leaves (its node has room again), then the middle relay is killed
 *    (SIGKILL): its listener is moved, the last relay is re-attached under the origin (the
 *    control plane has it pull from there, its listener consumes the new pipe), and both hear
 *    the sine again within 5 s.
 * 3. A fourth node starts (room for everyone), then the origin is killed: the stream moves, the
 *    broadcaster reconnects by itself, and every listener hears again within 10 s.
 *
 * Heartbeats every 300 ms make a loss noticed within a second. The test reads the nodes' own
 * heartbeats on the bus to know where the listeners are. Each media process logs into the run's
 * temporary folder; KEEP_CASCADE=1 keeps it after the run (TEST_LOG_LEVEL sets their level).
 */
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, loadConfig } from '../common/index.js';
import { clusterTestEnv, createTestDatabase, type TestDatabase } from '../common/testing/index.js';
import { type ControlPlaneClient, createControlPlaneClient } from '../control-plane/client/index.js';
import { Broadcaster, Listener, SignalingConnection } from '../signaling/client/index.js';
import {
  type AudioTap,
  installWrtcGlobals,
  listenerTap,
  NODE_HANDLER_NAME,
  nodeWebSocket,
  sineSource,
} from '../signaling/client/testing/index.js';
import { type Platform, startPlatform } from './platform.js';
import { type MediaProcess, type MediaProcesses, signUpAndIn, watchMediaProcesses } from './testing/index.js';

installWrtcGlobals();

const WebSocket = nodeWebSocket();
const SERVICE_KEY = 'cascade-cluster-test-service-key-0123456789';
const HEARTBEAT_MS = 300;
const log = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', name: 'cascade-cluster-test' });
const audible = (rms: number) => rms > 100;
const run = randomBytes(3).toString('hex');
const cluster = `cascade${run}`;

let db: TestDatabase;
let dataDir: string;
let shared: Record<string, string>;
let control: Platform;
let edge: Platform;
let client: ControlPlaneClient;
let nodes: MediaProcesses;
const cleanups: Array<() => unknown> = [];

/** A media node that takes one listener, as its own process. */
const startMediaProcess = (name: string) => nodes.start(name, { MEDIA_NODE_MAX_LISTENERS: '1' });
const untilHeartbeats = (what: string, check: () => boolean) => nodes.untilHeartbeats(what, check);

const createUser = () => signUpAndIn(client, 'cascade');
const wsUrl = () => `ws://127.0.0.1:${edge.httpPort}/ws`;

async function goLive(owner: { token: string }, streamId: number) {
  const source = sineSource();
  cleanups.push(() => source.stop());
  const connection = new SignalingConnection({ url: wsUrl(), token: owner.token, WebSocket });
  cleanups.push(() => connection.close());
  await connection.connect();
  const broadcaster = new Broadcaster({ connection, handlerName: NODE_HANDLER_NAME });
  await broadcaster.publish(streamId, source.track);
  return { connection, broadcaster };
}

interface Fan {
  connection: SignalingConnection;
  listener: Listener;
  tap: AudioTap;
}

async function listen(fan: { token: string }, streamId: number): Promise<Fan> {
  const connection = new SignalingConnection({ url: wsUrl(), token: fan.token, WebSocket });
  cleanups.push(() => connection.close());
  await connection.connect();
  const listener = new Listener({ connection, handlerName: NODE_HANDLER_NAME });
  const tap = listenerTap(listener, await listener.listen(streamId));
  cleanups.push(() => tap.stop());
  return { connection, listener, tap };
}

const carried = (nodeId: string, streamId: number) => nodes.carried(nodeId, streamId);

/** Resolves once `fan` hears the sine again, or rejects at `deadline` (performance.now()). */
async function hearsBy(fan: Fan, deadline: number): Promise<void> {
  const left = deadline - performance.now();
  expect(left).toBeGreaterThan(0);
  await fan.tap.waitForFrames(25, audible, left);
}

beforeAll(async () => {
  db = await createTestDatabase('cluster');
  dataDir = await mkdtemp(path.join(tmpdir(), 'veza-cascade-'));
  for (const sequence of ['users_id_seq', 'streams_id_seq', 'chat_rooms_id_seq']) {
    await db.sql`select setval(${sequence}, ${randomInt(1_000_000, 2 ** 40)})`;
  }
  shared = {
    ...clusterTestEnv('cascade', db.url, SERVICE_KEY),
    MEDIA_CLUSTER: cluster,
    PRESENCE_HEARTBEAT_MS: String(HEARTBEAT_MS),
    // A chain, origin -> relay -> relay: the middle one's death re-attaches the last one.
    MEDIA_RELAY_FANOUT: '1',
  };
  nodes = await watchMediaProcesses({ label: 'cascade', run, shared, dataDir, log });
  control = await startPlatform(loadConfig({ ...shared, VEZA_ROLES: 'control-plane' }), log);
  client = createControlPlaneClient({ address: `127.0.0.1:${control.grpcPort}`, apiKey: SERVICE_KEY, log });
  edge = await startPlatform(
    loadConfig({
      ...shared,
      VEZA_ROLES: 'signaling',
      VEZA_NODE_ID: `cascade-edge-${run}`,
      CONTROL_PLANE_ADDRESS: `127.0.0.1:${control.grpcPort}`,
    }),
    log,
  );
}, 60_000);

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await nodes?.close();
  await edge?.close();
  client?.close();
  await control?.close();
  await db?.drop();
  if (dataDir && !process.env.KEEP_CASCADE) await rm(dataDir, { recursive: true, force: true });
});

describe('one broadcast across three media node processes (MEDIA_NODE_MAX_LISTENERS=1)', () => {
  it('spreads the listeners over every node, each hears the sine; a dead relay and then a dead origin are survived', async () => {
    // The origin first, so the control plane places the stream there.
    const origin = await startMediaProcess('origin');
    const owner = await createUser();
    const started = await client.stream.startStream(
      { title: 'Cascade', description: '', genre: '', isPublic: true, allowAnonymous: false },
      { token: owner.token },
    );
    const streamId = started.stream?.streamId ?? 0;
    expect(started.stream?.mediaNodeId).toBe(origin.nodeId);
    const relayA = await startMediaProcess('a');
    const relayB = await startMediaProcess('b');
    const live = await goLive(owner, streamId);

    // 1. One listener per node: the origin's one slot, then a node added under the origin, then the last.
    const fans: Fan[] = [];
    for (let i = 0; i < 3; i++) fans.push(await listen(await createUser(), streamId));
    for (const fan of fans) await fan.tap.waitForFrames(50, audible);
    await untilHeartbeats('a listener on each node', () =>
      [origin, relayA, relayB].every((node) => carried(node.nodeId, streamId)?.listeners === 1),
    );
    // One relay tier per node at fan-out 1: origin -> middle -> last.
    expect(carried(origin.nodeId, streamId)?.upstream).toBeNull();
    const middle = [relayA, relayB].find(
      (node) => carried(node.nodeId, streamId)?.upstream === origin.nodeId,
    );
    const last = middle === relayA ? relayB : relayA;
    expect(middle).toBeDefined();
    expect(carried(last.nodeId, streamId)?.upstream).toBe(middle?.nodeId);
    expect(carried(origin.nodeId, streamId)?.downstream).toEqual([middle?.nodeId]);
    for (const fan of fans) expect(fan.tap.medianFrameRms()).toBeGreaterThan(100);

    // 2. The origin's listener leaves, so the origin has room; then the middle relay dies. Its
    // listener is moved (to the origin); the last relay is re-attached under the origin by the
    // control plane, and its listener consumes the new pipe's producer. Both hear within 5 s.
    const [onOrigin, ...onRelays] = fans as [Fan, Fan, Fan];
    await onOrigin.listener.close();
    onOrigin.connection.close();
    await untilHeartbeats('the origin to have room', () => carried(origin.nodeId, streamId)?.listeners === 0);
    const relaysBack = onRelays.map((fan) => fan.listener.next('reconnected', 20_000));
    const relayKilledAt = performance.now();
    await (middle as MediaProcess).kill();
    await Promise.all(relaysBack);
    for (const fan of onRelays) fan.tap.reset();
    for (const fan of onRelays) await hearsBy(fan, relayKilledAt + 5000);
    const relayRecoveryMs = performance.now() - relayKilledAt;
    await untilHeartbeats(
      'the moved listener on the origin, the last relay under the origin',
      () =>
        carried(origin.nodeId, streamId)?.listeners === 1 &&
        carried(last.nodeId, streamId)?.upstream === origin.nodeId,
    );

    // 3. A fourth node gives the two listeners room after the origin's death; then the origin dies.
    const relayC = await startMediaProcess('c');
    const broadcasterBack = live.broadcaster.next('reconnected', 20_000);
    const listenersBack = onRelays.map((fan) => fan.listener.next('reconnected', 20_000));
    const originKilledAt = performance.now();
    await origin.kill();
    await broadcasterBack;
    await Promise.all(listenersBack);
    for (const fan of onRelays) fan.tap.reset();
    for (const fan of onRelays) await hearsBy(fan, originKilledAt + 10_000);
    const originRecoveryMs = performance.now() - originKilledAt;
    console.log(
      `cascade: every listener hears again ${Math.round(relayRecoveryMs)} ms after a relay's death, ${Math.round(originRecoveryMs)} ms after the origin's`,
    );
    const info = (await client.stream.getStreamInfo({ streamId })).stream;
    expect(info?.status).toBe('live');
    expect([last.nodeId, relayC.nodeId]).toContain(info?.mediaNodeId);
    // The tree rebuilt under the new origin: the other node pulls from it.
    const newOrigin = info?.mediaNodeId ?? '';
    const other = newOrigin === last.nodeId ? relayC.nodeId : last.nodeId;
    await untilHeartbeats('the tree rebuilt under the new origin', () => {
      return (
        carried(newOrigin, streamId)?.upstream === null && carried(other, streamId)?.upstream === newOrigin
      );
    });

    await client.stream.stopStream({ streamId, reason: '' }, { token: owner.token });
  }, 180_000);
});
