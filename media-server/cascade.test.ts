/**
 * Cascaded fan-out between media nodes: three real nodes (each its own workers and node id) that
 * reach each other over real NATS, as in cluster mode. A stream published on the origin is pulled
 * by a relay (PipeTransport over the network, RTX on), and from the relay by an edge node: a
 * listener on each hears the broadcaster's sine. Each node's listener cap refuses the listener
 * beyond it with a clear at-capacity error, counted; a draining node takes no new listener; a
 * relay nobody uses lets go of its pipe after the grace period; a new producer on the origin
 * reaches the tree again. A node whose parent died is re-attached once however many control
 * planes ask (each names the dead parent; the asks after the first are answered, not pulled).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MEDIA_FAILURE, VezaError } from '../common/contracts/index.js';
import { createLogger, loadConfig, renderMetrics } from '../common/index.js';
import { type EventBus, NatsEventBus } from '../common/ports/index.js';
import { clusterServices } from '../common/testing/index.js';
import { type MediaNode, type MediaNodeService, serveMediaNodeOverBus, startMediaNode } from './index.js';
import { mediaNodePeersOverBus } from './node-peers.js';
import { installWrtcGlobals, SineSource, TestListener, TestPublisher, until } from './testing/wrtc-peers.js';

const log = createLogger({ level: 'warn', name: 'cascade-test' });
const run = randomBytes(3).toString('hex');
const source = new SineSource({ frequency: 440, amplitude: 0.5 });
const buses: EventBus[] = [];
const served: MediaNodeService[] = [];
const nodes: Record<'origin' | 'relay' | 'edge', MediaNode> = {} as Record<
  'origin' | 'relay' | 'edge',
  MediaNode
>;
const closers: (() => void)[] = [];

async function startNode(name: string): Promise<MediaNode> {
  const nodeId = `cascade-${name}-${run}`;
  const config = loadConfig({
    VEZA_NODE_ID: nodeId,
    MEDIA_WORKERS: '1',
    MEDIA_LISTEN_IP: '127.0.0.1',
    MEDIA_NODE_MAX_LISTENERS: '1',
    MEDIA_RELAY_GRACE_S: '1',
    MEDIA_NODE_ZONE: `zone-${name}`,
  });
  // One NATS connection per node, as separate processes would have.
  const bus = await NatsEventBus.connect(clusterServices.natsUrl, { log });
  buses.push(bus);
  const node = await startMediaNode({ config, log, peers: mediaNodePeersOverBus(bus, log) });
  const service = serveMediaNodeOverBus(bus, node, nodeId, log, { cluster: `cascade-${run}` });
  served.push(service);
  await service.ready;
  return node;
}

async function failure(call: Promise<unknown>): Promise<VezaError> {
  const error = await call.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(VezaError);
  return error as VezaError;
}

async function listen(node: MediaNode, streamId: string, peerId: string): Promise<TestListener> {
  const listener = await TestListener.joinInOne(node, { streamId, peerId });
  // The node keeps a peer until it is told (the edge does that when a socket goes).
  closers.push(() => {
    listener.close();
    void node.closePeer(peerId);
  });
  return listener;
}

beforeAll(async () => {
  installWrtcGlobals();
  nodes.origin = await startNode('origin');
  nodes.relay = await startNode('relay');
  nodes.edge = await startNode('edge');
  source.start();
});

afterAll(async () => {
  for (const close of closers) close();
  source.stop();
  for (const service of served) await service.close();
  for (const node of Object.values(nodes)) await node?.close();
  for (const bus of buses) await bus.close();
});

describe('cascaded fan-out', () => {
  const streamId = `cascade-${run}`;
  let publisher: TestPublisher;

  it('pulls the stream origin -> relay -> edge over pipes, and a listener on every node hears the sine', async () => {
    await nodes.origin.openStream(streamId);
    publisher = await TestPublisher.start(nodes.origin, { streamId, peerId: `${streamId}-b` }, source);
    closers.push(() => publisher.close());

    const relayed = await nodes.relay.pullStream({ streamId, sourceNodeId: nodes.origin.nodeId });
    expect(relayed.upstream).toBe(nodes.origin.nodeId);
    // The same producer id on every node of the tree.
    expect((await nodes.origin.getStreamInfo(streamId)).producerId).toBe(relayed.producerId);
    const leaf = await nodes.edge.pullStream({ streamId, sourceNodeId: nodes.relay.nodeId });
    expect(leaf).toEqual({ producerId: relayed.producerId, upstream: nodes.relay.nodeId });
    // Idempotent while the pipe lives.
    expect(await nodes.edge.pullStream({ streamId, sourceNodeId: nodes.relay.nodeId })).toEqual(leaf);

    const heard = await Promise.all(
      (['origin', 'relay', 'edge'] as const).map((name) =>
        listen(nodes[name], streamId, `${streamId}-l-${name}`),
      ),
    );
    for (const listener of heard) await listener.waitForRms(source.rms, { tolerance: 0.1 });

    expect(nodes.origin.placementState()).toMatchObject({
      listeners: 1,
      maxListeners: 1,
      zone: 'zone-origin',
      draining: false,
      streams: [{ streamId, listeners: 1, upstream: null, downstream: [nodes.relay.nodeId] }],
    });
    expect(nodes.relay.placementState().streams).toEqual([
      { streamId, listeners: 1, upstream: nodes.origin.nodeId, downstream: [nodes.edge.nodeId] },
    ]);
    expect(nodes.edge.placementState().streams).toEqual([
      { streamId, listeners: 1, upstream: nodes.relay.nodeId, downstream: [] },
    ]);
  });

  it('re-attaches a node once when two control planes each ask after its parent died, under different carriers', async () => {
    // The edge pulls from the relay; each control plane saw "the relay died" and asks the edge to
    // pull elsewhere, naming the dead parent. The first ask re-attaches it under the origin.
    const first = await nodes.edge.pullStream({
      streamId,
      sourceNodeId: nodes.origin.nodeId,
      replacing: nodes.relay.nodeId,
    });
    expect(first.upstream).toBe(nodes.origin.nodeId);
    // The second control plane chose another carrier, one that does not even exist: pulling from it
    // would fail. The edge no longer pulls from the dead parent, so it keeps its pipe and says so.
    const second = await nodes.edge.pullStream({
      streamId,
      sourceNodeId: `cascade-elsewhere-${run}`,
      replacing: nodes.relay.nodeId,
    });
    expect(second).toEqual(first);
    expect(nodes.edge.placementState().streams).toEqual([
      expect.objectContaining({ streamId, upstream: nodes.origin.nodeId }),
    ]);
    // Back under the relay for the tests below (an ordinary pull, no re-attachment).
    const back = await nodes.edge.pullStream({ streamId, sourceNodeId: nodes.relay.nodeId });
    expect(back.upstream).toBe(nodes.relay.nodeId);
    await until(
      () =>
        nodes.origin.placementState().streams[0]?.downstream.includes(nodes.edge.nodeId) ? undefined : true,
      { what: 'the origin to close its pipe to the edge', timeoutMs: 10_000 },
    );
  });

  it('refuses the listener beyond MEDIA_NODE_MAX_LISTENERS with a clear at-capacity answer, and counts it', async () => {
    const error = await failure(
      TestListener.joinInOne(nodes.relay, { streamId, peerId: `${streamId}-one-too-many` }),
    );
    expect(error.code).toBe('resource_exhausted');
    expect(error.details.reason).toBe(MEDIA_FAILURE.atCapacity);
    expect(error.message).toMatch(/is at capacity on media node .* MEDIA_NODE_MAX_LISTENERS/);
    expect(nodes.relay.placementState().listeners).toBe(1);
    expect((await renderMetrics()).body).toMatch(
      new RegExp(`veza_media_listeners_refused_total\\{node="${nodes.relay.nodeId}",reason="node_max"\\} 1`),
    );
  });

  it('a new producer on the origin reaches the relay and the edge again', async () => {
    const before = (await nodes.edge.getStreamInfo(streamId)).producerId;
    publisher.close();
    publisher = await TestPublisher.start(nodes.origin, { streamId, peerId: `${streamId}-b` }, source);
    const after = (await nodes.origin.getStreamInfo(streamId)).producerId;
    expect(after).not.toBe(before);
    await until(
      async () => ((await nodes.edge.getStreamInfo(streamId)).producerId === after ? true : undefined),
      {
        what: 'the edge node to pull the new producer',
      },
    );
    closers.push(() => publisher.close());
    // A listener joining the edge node now hears it through both hops.
    await nodes.edge.closePeer(`${streamId}-l-edge`);
    const late = await listen(nodes.edge, streamId, `${streamId}-late`);
    await late.waitForRms(source.rms, { tolerance: 0.1 });
  });

  it('a draining node takes no new listener', async () => {
    const drainingStream = `${streamId}-drain`;
    // What the platform does on SIGTERM: the node refuses listeners, its service says goodbye.
    nodes.edge.drain();
    await served[2]?.drain();
    const error = await failure(
      TestListener.joinInOne(nodes.edge, { streamId: drainingStream, peerId: `${drainingStream}-l` }),
    );
    expect(error.code).toBe('unavailable');
    expect(error.details.reason).toBe(MEDIA_FAILURE.draining);
    expect(nodes.edge.placementState().draining).toBe(true);
  });

  it('a relay nobody uses any more releases its pipe after the grace period', async () => {
    for (const close of closers.splice(0)) close();
    publisher = await TestPublisher.start(nodes.origin, { streamId, peerId: `${streamId}-b` }, source);
    closers.push(() => publisher.close());
    // The edge (no listener left) lets go first, then the relay (nobody pulls from it any more).
    await until(() => (nodes.edge.placementState().streams.length === 0 ? true : undefined), {
      what: 'the edge node to release the stream',
      timeoutMs: 10_000,
    });
    await until(() => (nodes.relay.placementState().streams.length === 0 ? true : undefined), {
      what: 'the relay node to release the stream',
      timeoutMs: 10_000,
    });
    await until(
      () => (nodes.origin.placementState().streams[0]?.downstream.length === 0 ? true : undefined),
      { what: 'the origin to close its pipe to the relay', timeoutMs: 10_000 },
    );
    // The origin keeps its stream: the broadcaster is there.
    expect(nodes.origin.placementState().streams).toHaveLength(1);
  });
});
