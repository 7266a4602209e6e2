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
 * Heartbeats every 300 ms make a loss noticed within a second. The harness
 * (app/testing/media-cluster.ts) reads the nodes' own heartbeats on the bus to know where the
 * listeners are.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fan, type MediaCluster, type MediaProcess, startMediaCluster } from './testing/index.js';

const audible = (rms: number) => rms > 100;
let cluster: MediaCluster;
let nextIp = 2;

/** A media node as its own process, on its own loopback address (127.0.0.2, .3, ...). */
const startMediaProcess = (name: string) => cluster.startMediaProcess(name, { ip: `127.0.0.${nextIp++}` });

/** Resolves once `fan` hears the sine again, or rejects at `deadline` (performance.now()). */
async function hearsBy(fan: Fan, deadline: number): Promise<void> {
  const left = deadline - performance.now();
  expect(left).toBeGreaterThan(0);
  await fan.tap.waitForFrames(25, audible, left);
}

beforeAll(async () => {
  cluster = await startMediaCluster('cascade', {
    PRESENCE_HEARTBEAT_MS: '300',
    // A chain, origin -> relay -> relay: the middle one's death re-attaches the last one.
    MEDIA_RELAY_FANOUT: '1',
  });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
});

describe('one broadcast across three media node processes (MEDIA_NODE_MAX_LISTENERS=1)', () => {
  it('spreads the listeners over every node, each hears the sine; a dead relay and then a dead origin are survived', async () => {
    // The origin first, so the control plane places the stream there.
    const origin = await startMediaProcess('origin');
    const owner = await cluster.createUser();
    const { streamId, mediaNodeId } = await cluster.startStream(owner);
    expect(mediaNodeId).toBe(origin.nodeId);
    const relayA = await startMediaProcess('a');
    const relayB = await startMediaProcess('b');
    const live = await cluster.goLive(owner, streamId);

    // 1. One listener per node: the origin's one slot, then a node added under the origin, then the last.
    const fans: Fan[] = [];
    for (let i = 0; i < 3; i++) fans.push(await cluster.listen(await cluster.createUser(), streamId));
    for (const fan of fans) await fan.tap.waitForFrames(50, audible);
    await cluster.untilHeartbeats('a listener on each node', () =>
      [origin, relayA, relayB].every((node) => cluster.carried(node.nodeId, streamId)?.listeners === 1),
    );
    // One relay tier per node at fan-out 1: origin -> middle -> last.
    expect(cluster.carried(origin.nodeId, streamId)?.upstream).toBeNull();
    const middle = [relayA, relayB].find(
      (node) => cluster.carried(node.nodeId, streamId)?.upstream === origin.nodeId,
    );
    const last = middle === relayA ? relayB : relayA;
    expect(middle).toBeDefined();
    expect(cluster.carried(last.nodeId, streamId)?.upstream).toBe(middle?.nodeId);
    expect(cluster.carried(origin.nodeId, streamId)?.downstream).toEqual([middle?.nodeId]);
    for (const fan of fans) expect(fan.tap.medianFrameRms()).toBeGreaterThan(100);

    // 2. The origin's listener leaves, so the origin has room; then the middle relay dies. Its
    // listener is moved (to the origin); the last relay is re-attached under the origin by the
    // control plane, and its listener consumes the new pipe's producer. Both hear within 5 s.
    const [onOrigin, ...onRelays] = fans as [Fan, Fan, Fan];
    await onOrigin.listener.close();
    onOrigin.connection.close();
    await cluster.untilHeartbeats(
      'the origin to have room',
      () => cluster.carried(origin.nodeId, streamId)?.listeners === 0,
    );
    const relaysBack = onRelays.map((fan) => fan.listener.next('reconnected', 20_000));
    const relayKilledAt = performance.now();
    await (middle as MediaProcess).kill();
    await Promise.all(relaysBack);
    for (const fan of onRelays) fan.tap.reset();
    for (const fan of onRelays) await hearsBy(fan, relayKilledAt + 5000);
    const relayRecoveryMs = performance.now() - relayKilledAt;
    await cluster.untilHeartbeats(
      'the moved listener on the origin, the last relay under the origin',
      () =>
        cluster.carried(origin.nodeId, streamId)?.listeners === 1 &&
        cluster.carried(last.nodeId, streamId)?.upstream === origin.nodeId,
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
    const info = (await cluster.client.stream.getStreamInfo({ streamId })).stream;
    expect(info?.status).toBe('live');
    expect([last.nodeId, relayC.nodeId]).toContain(info?.mediaNodeId);
    // The tree rebuilt under the new origin: the other node pulls from it.
    const newOrigin = info?.mediaNodeId ?? '';
    const other = newOrigin === last.nodeId ? relayC.nodeId : last.nodeId;
    await cluster.untilHeartbeats('the tree rebuilt under the new origin', () => {
      return (
        cluster.carried(newOrigin, streamId)?.upstream === null &&
        cluster.carried(other, streamId)?.upstream === newOrigin
      );
    });

    await cluster.client.stream.stopStream({ streamId, reason: '' }, { token: owner.token });
  }, 180_000);
});
