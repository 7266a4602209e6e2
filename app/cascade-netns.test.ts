/**
 * Cascaded fan-out over a lossy, slow link between media nodes on a network of their own (issue
 * 12's acceptance): three media nodes as separate processes, each in its own network namespace
 * with its own veth address (media-server/testing/netns.ts), a control plane and an edge in
 * cluster mode in this process, `MEDIA_NODE_MAX_LISTENERS=1`, and listeners on the client library
 * over @roamhq/wrtc in this (root) namespace, reaching each node's announced address over its veth.
 *
 * The nodes' pipes cross a UDP impairment proxy of the test's own (the kernel here has no netem):
 * each node announces a mirror address of the proxy for its pipes (MEDIA_PIPE_ANNOUNCED_ADDRESS),
 * so origin -> relay traffic goes node -> proxy (40 ms, 2% of the packets dropped, in each
 * direction) -> node. The namespaces cannot reach the machine's 127.0.0.1, where NATS, Redis and
 * PostgreSQL listen: TCP forwarders on the lab's root-side address bring them in.
 *
 * Three listeners land on the three nodes (the origin's one slot, then two relays under it, at
 * MEDIA_RELAY_FANOUT=2). Over about 15 s of audio the proxy must really have dropped about 2% of
 * each origin -> relay pipe (else the impairment was bypassed and the test fails), the relays must
 * have asked for the holes (RTCP NACKs crossing back) and the origin resent them (RTP sequence
 * numbers crossing the link twice), and each relay's listener must have lost under 0.5%.
 *
 * Needs root and iproute2 (CI runs as root): without them it fails, saying so; it never skips.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createNetnsLab,
  forwardTcp,
  type ImpairmentStats,
  type MirroredNode,
  type NetnsLab,
  startUdpImpairmentProxy,
  type TcpForwarder,
  type UdpImpairmentProxy,
} from '../media-server/testing/index.js';
import { until } from '../media-server/testing/wrtc-peers.js';
import { type Fan, type MediaCluster, type MediaProcess, startMediaCluster } from './testing/index.js';

const NODES = ['origin', 'a', 'b'] as const;
type NodeName = (typeof NODES)[number];
const DELAY_MS = 40;
const LOSS = 0.02;
/** Each node's RTC ports: every node has a namespace of its own, so they may all use the same range. */
const RTC_PORTS = { minPort: 40_000, maxPort: 40_029 };
/** About 15 s of audio at 50 packets/s. */
const MEASURED_PACKETS = 750;
const audible = (rms: number) => rms > 100;

let lab: NetnsLab;
let cluster: MediaCluster;
let proxy: UdpImpairmentProxy;
const forwarders: TcpForwarder[] = [];
const links = {} as Record<NodeName, MirroredNode>;
let serviceEnv: Record<string, string>;

function startNode(name: NodeName): Promise<MediaProcess> {
  const node = lab.node(name);
  return cluster.startMediaProcess(name, {
    ip: node.ip,
    env: {
      ...serviceEnv,
      MEDIA_PIPE_ANNOUNCED_ADDRESS: links[name].mirrorIp,
      MEDIA_RTC_MIN_PORT: String(RTC_PORTS.minPort),
      MEDIA_RTC_MAX_PORT: String(RTC_PORTS.maxPort),
    },
    spawn: (command, args, options) => lab.spawn(name, command, args, options),
  });
}

/**
 * The listener's received and lost packets so far, as its WebRTC stack counts them, for its current
 * consumer (a transport keeps the inbound stream of a consumer it replaced).
 */
async function inbound(fan: Fan): Promise<{ consumerId: string; received: number; lost: number }> {
  const consumer = fan.listener.consumer;
  const ssrc = consumer?.rtpParameters.encodings?.[0]?.ssrc;
  const report = await fan.listener.transport?.getStats();
  for (const stats of report?.values() ?? []) {
    if (stats.type === 'inbound-rtp' && stats.ssrc === ssrc)
      return {
        consumerId: consumer?.id ?? '',
        received: stats.packetsReceived ?? 0,
        lost: stats.packetsLost ?? 0,
      };
  }
  throw new Error(`no inbound RTP stream with SSRC ${ssrc} on the listener's transport`);
}

const NONE: ImpairmentStats = { forwarded: 0, dropped: 0, retransmitted: 0, nacks: 0 };
const direction = (from: NodeName, to: NodeName) =>
  proxy.stats().get(`${links[from].realIp}->${links[to].realIp}`) ?? NONE;
const minus = (after: ImpairmentStats, before: ImpairmentStats): ImpairmentStats => ({
  forwarded: after.forwarded - before.forwarded,
  dropped: after.dropped - before.dropped,
  retransmitted: after.retransmitted - before.retransmitted,
  nacks: after.nacks - before.nacks,
});

beforeAll(async () => {
  lab = createNetnsLab([...NODES]);
  for (const name of NODES) {
    links[name] = { realIp: lab.node(name).ip, mirrorIp: lab.addHostAddress(), ...RTC_PORTS };
  }
  proxy = await startUdpImpairmentProxy({
    nodes: NODES.map((name) => links[name]),
    delayMs: DELAY_MS,
    loss: LOSS,
    seed: 7,
  });
  cluster = await startMediaCluster('netns', {
    PRESENCE_HEARTBEAT_MS: '300',
    // Both relays under the origin: each one's pipe is one impaired hop.
    MEDIA_RELAY_FANOUT: '2',
  });
  serviceEnv = {};
  for (const variable of ['NATS_URL', 'REDIS_URL', 'DATABASE_URL'] as const) {
    const forwarder = await forwardTcp(cluster.shared[variable] ?? '', lab.hostIp);
    forwarders.push(forwarder);
    serviceEnv[variable] = forwarder.url;
  }
}, 60_000);

afterAll(async () => {
  await cluster?.close();
  await proxy?.close();
  for (const forwarder of forwarders) await forwarder.close();
  lab?.close();
});

describe('a cascade of media nodes in network namespaces, over a link with 40 ms of delay and 2% loss', () => {
  it('gets the sine to the listeners on the relays with under 0.5% residual loss: NACK repairs the pipes', async () => {
    // The origin first, so the control plane places the stream there.
    const origin = await startNode('origin');
    const owner = await cluster.createUser();
    const { streamId, mediaNodeId } = await cluster.startStream(owner);
    expect(mediaNodeId).toBe(origin.nodeId);
    const relays = { a: await startNode('a'), b: await startNode('b') };
    const nodes: Record<NodeName, MediaProcess> = { origin, ...relays };
    await cluster.goLive(owner, streamId);

    // One listener per node; the heartbeats say which node each one landed on.
    const fanOn = new Map<NodeName, Fan>();
    const listening = () =>
      NODES.filter((name) => cluster.carried(nodes[name].nodeId, streamId)?.listeners === 1);
    for (let i = 1; i <= NODES.length; i++) {
      const fan = await cluster.listen(await cluster.createUser(), streamId);
      await cluster.untilHeartbeats(`listener ${i} placed`, () => listening().length === i);
      const placed = listening().find((name) => !fanOn.has(name));
      if (!placed) throw new Error(`listener ${i} is on no new node`);
      fanOn.set(placed, fan);
    }
    for (const fan of fanOn.values()) await fan.tap.waitForFrames(50, audible, 30_000);
    // A relay starting to carry the stream announces its producer while the listener joins: the
    // listener keeps the consumer its join gave it rather than consuming again.
    for (const fan of fanOn.values()) expect(fan.consumes()).toBe(1);
    expect(cluster.carried(origin.nodeId, streamId)?.upstream).toBeNull();
    for (const relay of Object.values(relays)) {
      expect(cluster.carried(relay.nodeId, streamId)?.upstream).toBe(origin.nodeId);
    }

    const relayFans = (['a', 'b'] as const).map((name) => ({ name, fan: fanOn.get(name)! }));
    const proxyBefore = relayFans.map(({ name }) => ({
      out: direction('origin', name),
      back: direction(name, 'origin'),
    }));
    const before = await Promise.all(relayFans.map(({ fan }) => inbound(fan)));
    const after = await until(
      async () => {
        const now = await Promise.all(relayFans.map(({ fan }) => inbound(fan)));
        // One consumer all along, or the counts are of two streams.
        expect(now.map((count) => count.consumerId)).toEqual(before.map((count) => count.consumerId));
        const enough = now.every((count, i) => count.received - before[i]!.received >= MEASURED_PACKETS);
        return enough ? now : undefined;
      },
      {
        timeoutMs: 60_000,
        intervalMs: 250,
        what: `${MEASURED_PACKETS} more packets at each relay's listener`,
      },
    );

    let dropped = 0;
    let offered = 0;
    relayFans.forEach(({ name }, i) => {
      const out = minus(direction('origin', name), proxyBefore[i]!.out);
      const back = minus(direction(name, 'origin'), proxyBefore[i]!.back);
      const received = after[i]!.received - before[i]!.received;
      // Cumulative loss goes down when a packet counted lost arrives late (resent): one counted lost
      // before the window and repaired inside it is not a gain.
      const lost = Math.max(0, after[i]!.lost - before[i]!.lost);
      const residual = lost / (received + lost);
      const linkLoss = out.dropped / (out.dropped + out.forwarded);
      console.log(
        `cascade netns: origin -> relay ${name}: the link dropped ${out.dropped}/${out.dropped + out.forwarded} packets (${(linkLoss * 100).toFixed(2)}%), ` +
          `relay ${name} sent ${back.nacks} NACKs, the origin resent ${out.retransmitted} packets; ` +
          `the listener on relay ${name} lost ${lost}/${received + lost} (${(residual * 100).toFixed(2)}%)`,
      );
      dropped += out.dropped;
      offered += out.dropped + out.forwarded;
      // The pipe crossed the proxy and lost packets there ...
      expect(out.dropped).toBeGreaterThan(0);
      // ... the relay asked for them and the origin sent them again ...
      expect(back.nacks).toBeGreaterThan(0);
      expect(out.retransmitted).toBeGreaterThanOrEqual(out.dropped / 2);
      // ... and the listener did not miss them.
      expect(residual).toBeLessThan(0.005);
    });
    // About 2% over both pipes (about 1,600 packets): the impairment really was in the path.
    expect(dropped / offered).toBeGreaterThan(0.01);
    expect(dropped / offered).toBeLessThan(0.035);
    for (const fan of fanOn.values()) expect(fan.tap.medianFrameRms()).toBeGreaterThan(100);

    await cluster.client.stream.stopStream({ streamId, reason: '' }, { token: owner.token });
  }, 180_000);
});
