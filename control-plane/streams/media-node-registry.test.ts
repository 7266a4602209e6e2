/**
 * The media-node registry against real media nodes (mediasoup workers) announcing themselves over
 * the machine's NATS, each side on its own connection as separate processes would be. Every test has
 * its own cluster name and node ids, so concurrent runs on the same NATS server stay apart.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  listenersLeftSubject,
  mediaPresenceOf,
  mediaPresenceSubject,
  mediaRequestSubject,
  placeListenerSubject,
  VezaError,
} from '../../common/contracts/index.js';
import { createLogger, loadConfig } from '../../common/index.js';
import { NatsEventBus } from '../../common/ports/index.js';
import { clusterServices } from '../../common/testing/index.js';
import {
  type MediaNode,
  type MediaNodeService,
  type ServeMediaNodeOptions,
  serveMediaNodeOverBus,
  startMediaNode,
} from '../../media-server/index.js';
import { createMediaNodeRegistry, type MediaNodeRegistry } from './media-node-registry.js';

const log = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', name: 'media-registry-test' });
/** Long enough that only the first heartbeat, a probe or a goodbye can explain what a test sees. */
const NO_PERIODIC_BEAT_MS = 60_000;
const hex = () => randomBytes(4).toString('hex');

let dataDir: string;
const nodes: MediaNode[] = [];

async function mediaNode(): Promise<MediaNode> {
  const config = loadConfig({
    VEZA_DATA_DIR: dataDir,
    VEZA_NODE_ID: `registry-test-${hex()}`,
    MEDIA_WORKERS: '1',
    MEDIA_LISTEN_IP: '127.0.0.1',
    LOG_LEVEL: 'silent',
  });
  const node = await startMediaNode({ config, log });
  nodes.push(node);
  return node;
}

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'veza-media-registry-'));
  await Promise.all([mediaNode(), mediaNode()]);
});
afterAll(async () => {
  for (const node of nodes) await node.close();
  await rm(dataDir, { recursive: true, force: true });
});

describe('the media-node registry over NATS', () => {
  let cluster: string;
  /** What the registries of a test reported lost (onLost). */
  let lost: Array<{ nodeId: string; cause: string }> = [];
  const cleanups: Array<() => unknown> = [];

  beforeEach(() => {
    cluster = `test-${hex()}`;
    lost = [];
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  const connect = async () => {
    const bus = await NatsEventBus.connect(clusterServices.natsUrl, { log });
    cleanups.push(() => bus.close());
    return bus;
  };

  const registry = async (settleMs?: number): Promise<MediaNodeRegistry> => {
    const created = createMediaNodeRegistry({
      bus: await connect(),
      log,
      cluster,
      ...(settleMs === undefined ? {} : { settleMs }),
      onLost: (nodeId, cause) => lost.push({ nodeId, cause }),
    });
    cleanups.push(() => created.close());
    await created.ready;
    return created;
  };

  /** A node on its own bus connection, as a media process; `bus.close()` is that process dying. */
  const serve = async (node: MediaNode, options: ServeMediaNodeOptions = {}) => {
    const bus = await connect();
    const nodeId = `media-${hex()}`;
    const served: MediaNodeService = serveMediaNodeOverBus(bus, node, nodeId, log, { cluster, ...options });
    cleanups.push(() => served.close());
    await served.ready;
    return { nodeId, served, bus };
  };

  const liveIds = (r: MediaNodeRegistry) => r.live().map((node) => node.nodeId);

  it('lists a node with its load after its first heartbeat; a registry started later finds it through its probe', async () => {
    const early = await registry();
    const { nodeId } = await serve(nodes[0]!, { heartbeatMs: NO_PERIODIC_BEAT_MS });
    await vi.waitFor(() => expect(liveIds(early)).toEqual([nodeId]));
    expect(early.live()[0]).toMatchObject({
      nodeId,
      workers: 1,
      intervalMs: NO_PERIODIC_BEAT_MS,
      transports: 0,
      consumers: 0,
      load: 0,
      placed: 0,
    });

    // The node's next heartbeat is a minute away: only the probe can bring it in now.
    const late = await registry();
    await vi.waitFor(() => expect(liveIds(late)).toEqual([nodeId]), { timeout: 5_000 });
    await expect(late.pick()).resolves.toBe(nodeId);
  });

  it('places a stream on a node that comes up while the placement waits, instead of failing', async () => {
    const watching = await registry(10_000);
    const placed = watching.pick();
    const { nodeId } = await serve(nodes[1]!, { heartbeatMs: NO_PERIODIC_BEAT_MS });
    await expect(placed).resolves.toBe(nodeId);
  });

  it("answers the edges' listener placements over the bus, counts the batches of listeners that left, and names a bad field", async () => {
    const watching = await registry();
    const { nodeId } = await serve(nodes[0]!, { heartbeatMs: NO_PERIODIC_BEAT_MS });
    await vi.waitFor(() => expect(liveIds(watching)).toEqual([nodeId]));
    const edge = await connect();
    const place = () =>
      edge.request(
        placeListenerSubject(cluster),
        { streamId: '42', originNodeId: nodeId },
        { timeoutMs: 5_000 },
      );
    await expect(place()).resolves.toEqual({ nodeId, pullFrom: null });
    // A node unknown to the registry (another cluster's, or gone) is the listener's origin as before.
    await expect(
      edge.request(placeListenerSubject(cluster), { streamId: '42', originNodeId: 'elsewhere' }),
    ).resolves.toEqual({ nodeId: 'elsewhere', pullFrom: null });
    const failure = await edge
      .request(placeListenerSubject(cluster), { streamId: 'x', originNodeId: nodeId })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(VezaError);
    expect(failure).toMatchObject({ code: 'invalid_argument', message: expect.stringMatching(/streamId/) });
    // The node takes 1,000 listeners by default: fill the registry's view, then one batch frees one place.
    const before = watching.live()[0];
    expect(before?.maxListeners).toBeGreaterThan(0);
    for (let placed = 1; placed < (before?.maxListeners ?? 0); placed++) await place();
    await expect(place()).rejects.toMatchObject({
      code: 'resource_exhausted',
      details: { reason: 'at_capacity' },
    });
    await edge.publish(listenersLeftSubject(cluster), { left: [{ streamId: '42', nodeId, count: 1 }] });
    await vi.waitFor(() => expect(place()).resolves.toEqual({ nodeId, pullFrom: null }));
  });

  it('forgets a node at once when it says goodbye, then refuses to place a stream', async () => {
    const watching = await registry();
    const { nodeId, served } = await serve(nodes[0]!, { heartbeatMs: NO_PERIODIC_BEAT_MS });
    await vi.waitFor(() => expect(liveIds(watching)).toEqual([nodeId]));

    // Expiry would take three minutes here: gone within seconds means the goodbye did it.
    await served.drain();
    await vi.waitFor(() => expect(liveIds(watching)).toEqual([]), { timeout: 5_000 });
    // A draining node is not lost: it keeps serving the streams it hosts.
    expect(lost).toEqual([]);
    await expect(watching.pick()).rejects.toMatchObject({
      code: 'unavailable',
      message: expect.stringMatching(/no media node is available/),
    });
    // Draining only stops new placements: the node still answers for the streams it hosts.
    const caller = await connect();
    await expect(
      caller.request(mediaRequestSubject(nodeId, 'listenerCount'), { args: ['nope'] }),
    ).rejects.toMatchObject({
      code: 'not_found',
      message: 'stream nope is not open on this media node',
    });
  });

  it('forgets a node whose heartbeats stop (no goodbye) after three missed intervals', async () => {
    const watching = await registry();
    const heartbeatMs = 200;
    const observer = await connect();
    const beats: string[] = [];
    const observed = observer.subscribe(mediaPresenceOf(cluster), (payload, subject) => {
      if (subject.endsWith('.heartbeat')) beats.push((payload as { nodeId: string }).nodeId);
    });
    await observed.ready;
    const { nodeId, bus } = await serve(nodes[0]!, { heartbeatMs });

    // Five heartbeats in, the first is long expired: the periodic ones keep the node listed.
    await vi.waitFor(() => expect(beats.length).toBeGreaterThanOrEqual(5), { timeout: 20 * heartbeatMs });
    expect(liveIds(watching)).toEqual([nodeId]);

    // The process "dies": its connection goes, and no goodbye is sent. The registry notices on
    // its own (a timer), without anyone asking it for a placement.
    expect(lost).toEqual([]);
    await bus.close();
    await vi.waitFor(() => expect(lost).toEqual([{ nodeId, cause: 'missed' }]), { timeout: 5_000 });
    expect(liveIds(watching)).toEqual([]);
    await expect(watching.pick()).rejects.toThrow(/no media node is available/);
  });

  it('places a stream on the least-loaded live node, counting the streams placed since its last heartbeat', async () => {
    const [a, b] = nodes as [MediaNode, MediaNode];
    const streamA = `registry-${hex()}`;
    const streamB = `registry-${hex()}`;
    const peers: Array<{ node: MediaNode; peerId: string }> = [];
    cleanups.push(async () => {
      for (const { node, peerId } of peers) await node.closePeer(peerId);
      await a.closeStream(streamA);
      await b.closeStream(streamB);
    });
    const addTransports = async (node: MediaNode, streamId: string, count: number) => {
      await node.openStream(streamId);
      for (let i = 0; i < count; i++) {
        const peerId = `peer-${hex()}`;
        peers.push({ node, peerId });
        await node.createTransport({ streamId, peerId, direction: 'recv' });
      }
    };

    await addTransports(a, streamA, 2);
    const watching = await registry();
    const servedA = await serve(a, { heartbeatMs: NO_PERIODIC_BEAT_MS });
    const servedB = await serve(b, { heartbeatMs: NO_PERIODIC_BEAT_MS });
    await vi.waitFor(() =>
      expect(watching.live()).toEqual([
        expect.objectContaining({ nodeId: servedB.nodeId, load: 0, score: 0 }),
        expect.objectContaining({ nodeId: servedA.nodeId, transports: 2, load: 2, score: 2 }),
      ]),
    );

    // B is idle; each stream placed on it counts until its next heartbeat says what it really carries.
    expect(await watching.pick()).toBe(servedB.nodeId);
    expect(await watching.pick()).toBe(servedB.nodeId);
    expect(watching.live().find((node) => node.nodeId === servedB.nodeId)).toMatchObject({
      placed: 2,
      score: 2,
    });

    // B gets busier than A; a probe makes both report now.
    await addTransports(b, streamB, 4);
    await servedB.bus.publish(mediaPresenceSubject(cluster, 'probe'), {});
    await vi.waitFor(() =>
      expect(watching.live().find((node) => node.nodeId === servedB.nodeId)).toMatchObject({
        load: 4,
        placed: 0,
      }),
    );
    expect(await watching.pick()).toBe(servedA.nodeId);
  });
});
