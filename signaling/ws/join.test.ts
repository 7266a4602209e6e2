/**
 * The one-request join (docs/signaling.md, "The one-request join") through the real edge,
 * control plane and media node: the capabilities pushed on open, a join that answers with the
 * transport and the consumer, a pipelined connect and resume, no control-plane call per join
 * (the edge's memory of the stream decides, with the control plane's visibility rules), and a
 * clear refusal when the stream is at capacity.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type SignalingStack, startSignalingStack, type TestUser } from '../../app/testing/index.js';
import { ROUTER_RTP_CAPABILITIES } from '../../common/contracts/index.js';
import { metricsRegistry } from '../../common/index.js';
import { Broadcaster, Listener, SignalingConnection } from '../client/index.js';
import {
  installWrtcGlobals,
  listenerTap,
  NODE_HANDLER_NAME,
  nodeWebSocket,
  sineSource,
} from '../client/testing/index.js';
import { RawClient } from './test-clients.js';

installWrtcGlobals();

const WebSocket = nodeWebSocket();
const handlerName = NODE_HANDLER_NAME;
const OPUS_CAPS = {
  codecs: [
    { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2, preferredPayloadType: 100 },
  ],
};
const FINGERPRINT = { algorithm: 'sha-256', value: Array(32).fill('0F').join(':') };
const audible = (rms: number) => rms > 100;

/** Calls of `counter` so far whose `label` is `value`, from this process's metrics registry. */
async function counted(counter: string, label: string, value: string): Promise<number> {
  const metric = await metricsRegistry().getSingleMetric(counter)?.get();
  return (metric?.values ?? [])
    .filter((sample) => sample.labels[label] === value)
    .reduce((sum, sample) => sum + sample.value, 0);
}

const getStreamInfoCalls = () =>
  counted('veza_grpc_requests_total', 'method', 'veza.stream.StreamService/GetStreamInfo');
const wsRequests = (method: string) => counted('veza_ws_requests_total', 'method', method);

function harness(env: Record<string, string> = {}) {
  const state = {} as { stack: SignalingStack; owner: TestUser; fan: TestUser };
  const cleanups: Array<() => void | Promise<void>> = [];
  beforeAll(async () => {
    state.stack = await startSignalingStack({ env });
    state.owner = await state.stack.createUser();
    state.fan = await state.stack.createUser();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(async () => {
    await state.stack?.close();
  });
  const raw = async (token: string, wsUrl = state.stack.wsUrl) => {
    const client = await RawClient.open(wsUrl, `v=1&token=${encodeURIComponent(token)}`);
    cleanups.push(() => client.close());
    return client;
  };
  const goLive = async (streamId: number) => {
    const source = sineSource();
    cleanups.push(() => source.stop());
    const connection = new SignalingConnection({
      url: state.stack.wsUrl,
      token: state.owner.token,
      WebSocket,
    });
    cleanups.push(() => connection.close());
    await connection.connect();
    const broadcaster = new Broadcaster({ connection, handlerName });
    await broadcaster.publish(streamId, source.track);
    return broadcaster;
  };
  return { state, cleanups, raw, goLive };
}

describe('the one-request join', () => {
  const { state, cleanups, raw, goLive } = harness();

  it('answers join with the transport and the consumer, takes connect and resume pipelined, and asks the control plane nothing', async () => {
    const streamId = await state.stack.startStream(state.owner);
    const asked = await getStreamInfoCalls();

    const early = await raw(state.fan.token);
    const hello = await early.next((frame) => frame.notification === 'routerRtpCapabilities');
    expect(hello.data).toEqual({ rtpCapabilities: ROUTER_RTP_CAPABILITIES });
    let frame = await early.request('join', { streamId, role: 'listener', rtpCapabilities: OPUS_CAPS });
    // Nobody produces yet: the listener is placed and waits for streamStarted.
    expect(frame).toMatchObject({
      ok: true,
      result: { streamId, role: 'listener', transport: { id: expect.any(String) }, consumer: null },
    });

    await goLive(streamId);
    const client = await raw(state.fan.token);
    frame = await client.request('join', { streamId, role: 'listener', rtpCapabilities: OPUS_CAPS });
    expect(frame.ok).toBe(true);
    const result = (frame as { result: Record<string, unknown> }).result as {
      transport: { id: string; iceParameters: object; iceCandidates: unknown[]; dtlsParameters: object };
      consumer: {
        consumerId: string;
        producerId: string;
        kind: string;
        rtpParameters: object;
        paused: boolean;
      };
      rtpCapabilities: unknown;
      listenerCount: number;
    };
    expect(result.transport.iceCandidates.length).toBeGreaterThan(0);
    expect(result.consumer).toMatchObject({ kind: 'audio', paused: true, producerId: expect.any(String) });
    expect(result.rtpCapabilities).toEqual(ROUTER_RTP_CAPABILITIES);
    expect(result.listenerCount).toBe(1);

    // Both sent before either answer: the edge handles them in order.
    const connected = client.request('connectTransport', {
      transportId: result.transport.id,
      dtlsParameters: { role: 'client', fingerprints: [FINGERPRINT] },
    });
    const resumed = client.request('resumeConsumer', { consumerId: result.consumer.consumerId });
    expect(await connected).toMatchObject({ ok: true });
    expect(await resumed).toMatchObject({ ok: true });

    // The client library takes the same path: no createTransport, no consume.
    const [transports, consumes] = await Promise.all([wsRequests('createTransport'), wsRequests('consume')]);
    const connection = new SignalingConnection({ url: state.stack.wsUrl, token: state.fan.token, WebSocket });
    cleanups.push(() => connection.close());
    await connection.connect();
    const listener = new Listener({ connection, handlerName });
    const tap = listenerTap(listener);
    cleanups.push(() => tap.stop());
    await listener.listen(streamId);
    await tap.waitForFrames(20, audible);
    expect(await wsRequests('createTransport')).toBe(transports);
    expect(await wsRequests('consume')).toBe(consumes);

    expect(await getStreamInfoCalls()).toBe(asked);
  });

  it('keeps the control plane rules for private streams: the owner and moderators only, from memory', async () => {
    const streamId = await state.stack.startStream(state.owner, { isPublic: false });
    const moderator = await state.stack.createUser(['moderator']);
    const asked = await getStreamInfoCalls();

    const stranger = await raw(state.fan.token);
    let frame = await stranger.request('join', { streamId, role: 'listener', rtpCapabilities: OPUS_CAPS });
    expect(frame).toMatchObject({
      ok: false,
      error: { code: 'not_found', message: `stream ${streamId} not found` },
    });
    const byModerator = await raw(moderator.token);
    frame = await byModerator.request('join', { streamId, role: 'listener', rtpCapabilities: OPUS_CAPS });
    expect(frame).toMatchObject({ ok: true, result: { consumer: null } });
    frame = await byModerator.request('join', { streamId, role: 'broadcaster', rtpCapabilities: OPUS_CAPS });
    expect(frame).toMatchObject({ ok: false, error: { code: 'permission_denied' } });
    const owner = await raw(state.owner.token);
    frame = await owner.request('join', { streamId, role: 'broadcaster', rtpCapabilities: OPUS_CAPS });
    expect(frame).toMatchObject({ ok: true, result: { role: 'broadcaster', consumer: null } });
    expect((frame as { result: { transport: { id: string } } }).result.transport.id).toEqual(
      expect.any(String),
    );

    await state.stack.stopStream(state.owner, streamId);
    await byModerator.next((f) => f.notification === 'streamEnded');
    // Ended: still not_found for whoever may not see it, ended for whoever may.
    frame = await byModerator.request('join', { streamId, role: 'listener' });
    expect(frame).toMatchObject({
      ok: false,
      error: { code: 'failed_precondition', reason: 'stream_ended' },
    });
    frame = await stranger.request('join', { streamId, role: 'listener' });
    expect(frame).toMatchObject({ ok: false, error: { code: 'not_found' } });
    expect(await getStreamInfoCalls()).toBe(asked);
  });

  it('asks the control plane at most once for a stream an edge has not heard of, then remembers it', async () => {
    const streamId = await state.stack.startStream(state.owner);
    // A new edge: it never saw stream.started; its listing of live streams may or may not have run yet.
    const edge = await state.stack.startEdge();
    const asked = await getStreamInfoCalls();
    for (let i = 0; i < 3; i++) {
      const client = await raw(state.fan.token, edge.wsUrl);
      const frame = await client.request('join', { streamId, role: 'listener', rtpCapabilities: OPUS_CAPS });
      expect(frame.ok).toBe(true);
    }
    expect((await getStreamInfoCalls()) - asked).toBeLessThanOrEqual(1);
  });
});

describe('a stream at capacity', () => {
  const { state, raw } = harness({ MEDIA_CONSUMER_BUDGET: '1' });

  it('refuses the listener that does not fit with resource_exhausted, and keeps the one that does', async () => {
    const streamId = await state.stack.startStream(state.owner);
    const first = await raw(state.fan.token);
    expect(
      await first.request('join', { streamId, role: 'listener', rtpCapabilities: OPUS_CAPS }),
    ).toMatchObject({ ok: true });
    const second = await raw((await state.stack.createUser()).token);
    const frame = await second.request('join', { streamId, role: 'listener', rtpCapabilities: OPUS_CAPS });
    expect(frame).toMatchObject({
      ok: false,
      error: { code: 'resource_exhausted', message: expect.stringMatching(/is at capacity/) },
    });
    // Nothing was handed out: the old two-step path is refused the same way.
    expect(await second.request('createTransport', { direction: 'recv' })).toMatchObject({
      ok: false,
      error: { code: 'failed_precondition', reason: 'not_joined' },
    });
    expect((await state.stack.media.getStreamInfo(String(streamId))).routers[0]?.listeners).toBe(1);
  });
});
