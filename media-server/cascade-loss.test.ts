/**
 * A lossy, slow link between origin and relay (cascaded fan-out): two real media nodes on their
 * own addresses (127.0.0.x) reaching each other over NATS, whose pipes go through a UDP
 * impairment proxy of the test's own (40 ms each way, 2% of packets dropped in each direction;
 * the kernel here has no netem). The nodes announce the proxy's mirror addresses for their pipes
 * (MEDIA_PIPE_ANNOUNCED_ADDRESS); a listener on the relay reaches the relay directly. The pipe
 * has RTX/NACK on, so the relay asks the origin again for what the link lost: the listener's
 * residual loss stays under 0.5% while the proxy drops about 2%.
 *
 * This is the pipe alone, in one process and without root; app/cascade-netns.test.ts is the same
 * link end to end, with the nodes as processes in network namespaces of their own.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, loadConfig } from '../common/index.js';
import { type EventBus, NatsEventBus } from '../common/ports/index.js';
import { clusterServices } from '../common/testing/index.js';
import { type MediaNode, type MediaNodeService, serveMediaNodeOverBus, startMediaNode } from './index.js';
import { mediaNodePeersOverBus } from './node-peers.js';
import {
  type ImpairmentStats,
  type MirroredNode,
  startUdpImpairmentProxy,
  type UdpImpairmentProxy,
} from './testing/udp-impairment-proxy.js';
import { installWrtcGlobals, SineSource, TestListener, TestPublisher, until } from './testing/wrtc-peers.js';

const log = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn', name: 'cascade-loss-test' });
const run = randomBytes(3).toString('hex');
const source = new SineSource({ frequency: 440, amplitude: 0.5 });
const closers: Array<() => unknown> = [];
/** Two small port ranges of this run's own (the proxy binds every port of them on the mirrors). */
const base = randomInt(20_000, 30_000);
const link: Record<'origin' | 'relay', MirroredNode> = {
  origin: { realIp: '127.0.0.22', mirrorIp: '127.0.0.32', minPort: base, maxPort: base + 19 },
  relay: { realIp: '127.0.0.23', mirrorIp: '127.0.0.33', minPort: base + 20, maxPort: base + 39 },
};
let proxy: UdpImpairmentProxy;
const nodes = {} as Record<'origin' | 'relay', MediaNode>;

async function startNode(name: 'origin' | 'relay'): Promise<MediaNode> {
  const nodeId = `loss-${name}-${run}`;
  const config = loadConfig({
    VEZA_NODE_ID: nodeId,
    MEDIA_WORKERS: '1',
    MEDIA_LISTEN_IP: link[name].realIp,
    MEDIA_PIPE_ANNOUNCED_ADDRESS: link[name].mirrorIp,
    MEDIA_RTC_MIN_PORT: String(link[name].minPort),
    MEDIA_RTC_MAX_PORT: String(link[name].maxPort),
  });
  const bus: EventBus = await NatsEventBus.connect(clusterServices.natsUrl, { log });
  closers.push(() => bus.close());
  const node = await startMediaNode({ config, log, peers: mediaNodePeersOverBus(bus, log) });
  closers.push(() => node.close());
  const service: MediaNodeService = serveMediaNodeOverBus(bus, node, nodeId, log, { cluster: `loss-${run}` });
  closers.push(() => service.close());
  await service.ready;
  return node;
}

/** What went from the origin to the relay through the proxy so far. */
function originToRelay(): ImpairmentStats {
  return (
    proxy.stats().get(`${link.origin.realIp}->${link.relay.realIp}`) ?? {
      forwarded: 0,
      dropped: 0,
      retransmitted: 0,
      nacks: 0,
    }
  );
}

/** The listener's received and lost packets so far, as its WebRTC stack counts them. */
async function inbound(listener: TestListener): Promise<{ received: number; lost: number }> {
  const report = await listener.transport?.getStats();
  for (const stats of report?.values() ?? []) {
    if (stats.type === 'inbound-rtp')
      return { received: stats.packetsReceived ?? 0, lost: stats.packetsLost ?? 0 };
  }
  return { received: 0, lost: 0 };
}

beforeAll(async () => {
  installWrtcGlobals();
  proxy = await startUdpImpairmentProxy({
    nodes: [link.origin, link.relay],
    delayMs: 40,
    loss: 0.02,
    seed: 7,
  });
  nodes.origin = await startNode('origin');
  nodes.relay = await startNode('relay');
  source.start();
});

afterAll(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  source.stop();
  await proxy?.close();
});

describe('a pipe over a link with 40 ms of delay and 2% loss', () => {
  it('gets the audio to a listener on the relay with under 0.5% residual loss: NACK repairs the link', async () => {
    const streamId = `loss-${run}`;
    await nodes.origin.openStream(streamId);
    const publisher = await TestPublisher.start(nodes.origin, { streamId, peerId: `${streamId}-b` }, source);
    closers.push(() => publisher.close());
    await nodes.relay.pullStream({ streamId, sourceNodeId: nodes.origin.nodeId });
    const listener = await TestListener.joinInOne(nodes.relay, { streamId, peerId: `${streamId}-l` });
    closers.push(() => {
      listener.close();
      return nodes.relay.closePeer(`${streamId}-l`);
    });
    await listener.waitForRms(source.rms, { tolerance: 0.1 });

    const proxyBefore = originToRelay();
    const before = await inbound(listener);
    // About 15 s of audio at 50 packets/s.
    const after = await until(
      async () => {
        const now = await inbound(listener);
        return now.received - before.received >= 750 ? now : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 250, what: '750 more packets at the listener' },
    );
    const proxyAfter = originToRelay();
    const dropped = proxyAfter.dropped - proxyBefore.dropped;
    const retransmitted = proxyAfter.retransmitted - proxyBefore.retransmitted;
    const sent = dropped + proxyAfter.forwarded - proxyBefore.forwarded;
    const linkLoss = dropped / sent;
    const received = after.received - before.received;
    const lost = after.lost - before.lost;
    const residual = lost / (received + lost);
    console.log(
      `cascade loss: the link dropped ${dropped}/${sent} packets origin -> relay (${(linkLoss * 100).toFixed(2)}%) and resent ${retransmitted}, the listener on the relay lost ${lost}/${received + lost} (${(residual * 100).toFixed(2)}%)`,
    );
    // The link really lost packets, the origin sent them again, and the listener did not miss them.
    expect(linkLoss).toBeGreaterThan(0.01);
    expect(retransmitted).toBeGreaterThanOrEqual(dropped / 2);
    expect(residual).toBeLessThan(0.005);
  }, 60_000);
});
