/**
 * The media node with real mediasoup workers and real WebRTC peers (libwebrtc through @roamhq/wrtc,
 * negotiated by mediasoup-client as in the browser): audio arrives intact, listeners spread across
 * workers beyond the consumer budget, and bad inputs get clear errors without hurting the stream.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROUTER_RTP_CAPABILITIES, VezaError } from '../common/contracts/index.js';
import { createLogger, loadConfig, renderMetrics } from '../common/index.js';
import { type MediaNode, type MediaNodeEvents, startMediaNode } from './index.js';
import {
  installWrtcGlobals,
  SineSource,
  TestListener,
  TestPublisher,
  until,
  viaJson,
} from './testing/wrtc-peers.js';

const BUDGET = 2;

let node: MediaNode;
const source = new SineSource({ frequency: 440, amplitude: 0.5 });
const publishers: TestPublisher[] = [];
const listeners: TestListener[] = [];

async function publish(streamId: string): Promise<TestPublisher> {
  await node.openStream(streamId);
  const publisher = await TestPublisher.start(node, { streamId, peerId: `${streamId}-broadcaster` }, source);
  publishers.push(publisher);
  return publisher;
}

async function listen(streamId: string, peerId: string): Promise<TestListener> {
  const listener = await TestListener.join(node, { streamId, peerId });
  listeners.push(listener);
  return listener;
}

/** Runs `call` and returns what it threw, checking it is one of our errors. */
async function failure(call: () => Promise<unknown>): Promise<VezaError> {
  const error = await call().then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(VezaError);
  return error as VezaError;
}

function recordEvents<K extends keyof MediaNodeEvents>(event: K): MediaNodeEvents[K][] {
  const seen: MediaNodeEvents[K][] = [];
  node.on(event, (payload) => seen.push(payload));
  return seen;
}

beforeAll(async () => {
  installWrtcGlobals();
  const config = loadConfig({
    MEDIA_WORKERS: '2',
    MEDIA_CONSUMER_BUDGET: String(BUDGET),
    VEZA_NODE_ID: 'media-test',
  });
  node = await startMediaNode({
    config,
    log: createLogger({ level: 'warn', name: 'media-test' }),
    statsIntervalMs: 100,
  });
  source.start();
});

afterAll(async () => {
  for (const listener of listeners) listener.close();
  for (const publisher of publishers) publisher.close();
  source.stop();
  await node?.close();
});

describe('media node', () => {
  it('delivers a 440 Hz sine decoded at a listener with RMS within 10% of the source', async () => {
    const levels = recordEvents('audioLevel');
    const counts = recordEvents('listenerCount');
    await publish('sine');
    const listener = await listen('sine', 'sine-listener');

    await listener.waitForRms(source.rms, { tolerance: 0.1 });
    // Measured once audio flows, over 1 s, so the start-up ramp does not count.
    const rms = await listener.measureRms(100);
    expect(Math.abs(rms - source.rms) / source.rms).toBeLessThan(0.1);
    console.info(
      `sine RMS: source ${source.rms.toFixed(0)}, received ${rms.toFixed(0)} (${((100 * (rms - source.rms)) / source.rms).toFixed(2)}%)`,
    );

    expect(await node.listenerCount('sine')).toBe(1);
    expect(counts).toContainEqual({ streamId: 'sine', count: 1 });
    await until(() => levels.some((level) => level.streamId === 'sine' && level.speaking), {
      what: 'a speaking audio level',
    });

    const stats = await node.getStats('sine-listener');
    expect(stats.transports[0]).toMatchObject({ direction: 'recv', dtlsState: 'connected' });
    const consumer = stats.consumers[0];
    expect(consumer?.packetCount).toBeGreaterThan(0);
    expect(consumer?.bitrateBps).toBeGreaterThan(0);
    expect(consumer?.score).toBeGreaterThan(0);
    const broadcaster = await node.getStats('sine-broadcaster');
    expect(broadcaster.producer?.packetCount).toBeGreaterThan(0);
    expect(JSON.parse(JSON.stringify(stats))).toEqual(stats);

    // Many peers in one call for the audience sampler: a peer that is not here is left out.
    const quality = await node.qualityStats(['sine-listener', 'nobody', 'sine-broadcaster']);
    expect(quality.map((peer) => peer.peerId)).toEqual(['sine-listener', 'sine-broadcaster']);
    expect(quality[0]?.consumers[0]?.packetCount).toBeGreaterThan(0);
    expect(quality[1]?.producer?.packetCount).toBeGreaterThan(0);
    expect(await failure(() => node.qualityStats([]))).toMatchObject({ code: 'invalid_argument' });
  });

  it('places a listener in one call (joinStream): transport and consumer, or no consumer before anyone produces', async () => {
    // A real router reports exactly the static capabilities clients load their Device with.
    expect(viaJson(await node.getRouterRtpCapabilities('sine'))).toEqual(ROUTER_RTP_CAPABILITIES);

    const early = await TestListener.joinInOne(node, { streamId: 'one-call', peerId: 'one-call-early' });
    listeners.push(early);
    expect(early.consumerId).toBe('');
    expect(await node.listenerCount('one-call')).toBe(0);
    await publish('one-call');
    await early.consume();
    await early.waitForRms(source.rms, { tolerance: 0.1 });

    const late = await TestListener.joinInOne(node, { streamId: 'one-call', peerId: 'one-call-late' });
    listeners.push(late);
    expect(late.consumerId).not.toBe('');
    await late.waitForRms(source.rms, { tolerance: 0.1 });
    expect(await node.listenerCount('one-call')).toBe(2);

    const broadcaster = await node.joinStream({
      streamId: 'one-call',
      peerId: 'one-call-second-broadcaster',
      role: 'broadcaster',
    });
    expect(broadcaster.consumer).toBeNull();
    expect(broadcaster.transport.workerIndex).toBe(
      (await node.getStreamInfo('one-call')).routers[0]?.workerIndex,
    );
    expect(viaJson(await node.getRouterRtpCapabilities('one-call'))).toEqual(ROUTER_RTP_CAPABILITIES);
    await node.closePeer('one-call-second-broadcaster');

    expect(
      await failure(() =>
        node.joinStream({
          streamId: 'one-call',
          peerId: 'p',
          role: 'listener',
          rtpCapabilities: { codecs: [] },
        }),
      ),
    ).toMatchObject({ code: 'invalid_argument', details: { field: 'rtpCapabilities' } });
    // The refused join left no peer behind.
    expect(await failure(() => node.getStats('p'))).toMatchObject({ code: 'not_found' });
    expect(
      await failure(() => node.joinStream({ streamId: 'one-call', peerId: 'q', role: 'dj' as 'listener' })),
    ).toMatchObject({ code: 'invalid_argument', details: { field: 'role' } });
  });

  it('pauses and resumes a consumer, and survives an ICE restart', async () => {
    const listener = await listen('sine', 'sine-pauser');
    await listener.waitForRms(source.rms);
    await node.pauseConsumer(listener.consumerId);
    await until(() => (listener.rms(20) ?? source.rms) < 0.05 * source.rms, { what: 'silence while paused' });
    await node.resumeConsumer(listener.consumerId);
    await listener.waitForRms(source.rms, { frames: 20 });

    const transportId = listener.info?.transportId ?? '';
    const { iceParameters } = await node.restartIce(transportId);
    expect(iceParameters.usernameFragment).not.toBe(listener.info?.iceParameters.usernameFragment);
    await listener.transport?.restartIce({ iceParameters });
    listener.resetMeter();
    await listener.waitForRms(source.rms, { frames: 20 });
    const stats = await node.getStats('sine-pauser');
    expect(stats.transports[0]?.iceState).toMatch(/connected|completed/);
  });

  it('puts listeners beyond the consumer budget on other workers, all hear the stream, and refuses one more than fits', async () => {
    await publish('fanout');
    const group: TestListener[] = [];
    for (let i = 0; i < 4; i++) group.push(await listen('fanout', `fanout-listener-${i}`));

    const workers = new Set(group.map((listener) => listener.workerIndex));
    expect(workers.size).toBe(2);
    let info = await node.getStreamInfo('fanout');
    expect(info.routers.map((router) => router.role).sort()).toEqual(['fanout', 'origin']);
    expect(info.routers.every((router) => router.listeners === BUDGET)).toBe(true);

    // Both workers hold a full router of the stream: the fifth is refused, with nothing left behind.
    const refused = await failure(() =>
      TestListener.joinInOne(node, { streamId: 'fanout', peerId: 'fanout-5' }),
    );
    expect(refused).toMatchObject({
      code: 'resource_exhausted',
      message: expect.stringContaining('stream fanout is at capacity'),
    });
    expect(await failure(() => node.getStats('fanout-5'))).toMatchObject({ code: 'not_found' });
    expect(
      await failure(() =>
        node.createTransport({ streamId: 'fanout', peerId: 'fanout-6', direction: 'recv' }),
      ),
    ).toMatchObject({ code: 'resource_exhausted' });
    info = await node.getStreamInfo('fanout');
    expect(info.routers.reduce((sum, router) => sum + router.listeners, 0)).toBe(4);

    await Promise.all(group.map((listener) => listener.waitForRms(source.rms, { tolerance: 0.1 })));
    expect(await node.listenerCount('fanout')).toBe(4);
    const perWorker = await node.getWorkers();
    expect(perWorker.every((worker) => worker.consumers > 0 && worker.cpuSeconds !== null)).toBe(true);

    const sample = (body: string, name: string): number =>
      Number(body.match(new RegExp(`^${name} ([0-9.e+-]+)$`, 'm'))?.[1] ?? Number.NaN);
    const metrics = await until(
      async () => {
        const { body } = await renderMetrics();
        return sample(body, 'veza_media_bytes_sent_total\\{node="media-test"\\}') > 0 && body;
      },
      { what: 'sampled byte counters' },
    );
    for (const worker of perWorker) {
      const labels = `\\{node="media-test",worker="${worker.workerIndex}"\\}`;
      expect(sample(metrics, `veza_media_consumers${labels}`)).toBeGreaterThanOrEqual(
        worker.consumers > 0 ? 1 : 0,
      );
      expect(sample(metrics, `veza_media_routers${labels}`)).toBeGreaterThanOrEqual(1);
      expect(sample(metrics, `veza_media_worker_cpu_seconds${labels}`)).toBeGreaterThan(0);
    }
    expect(sample(metrics, 'veza_media_workers\\{node="media-test"\\}')).toBe(2);
    expect(sample(metrics, 'veza_media_bytes_received_total\\{node="media-test"\\}')).toBeGreaterThan(0);
  });

  it('rejects bad inputs with clear errors and keeps the stream healthy for the others', async () => {
    await publish('robust');
    const healthy = await listen('robust', 'robust-healthy');
    await healthy.waitForRms(source.rms);
    const pids = (await node.getWorkers()).map((worker) => worker.pid);
    const victim = await TestListener.transportOnly(node, { streamId: 'robust', peerId: 'robust-victim' });
    listeners.push(victim);
    const transportId = victim.info?.transportId ?? '';

    // Malformed DTLS parameters name the bad field.
    const badDtls = await failure(() =>
      node.connectTransport(transportId, { fingerprints: [{ algorithm: 'sha-256', value: 'not hex' }] }),
    );
    expect(badDtls).toMatchObject({
      code: 'invalid_argument',
      details: { field: 'dtlsParameters.fingerprints.0.value' },
    });
    const noFingerprints = await failure(() =>
      node.connectTransport(transportId, { role: 'client', fingerprints: [] }),
    );
    expect(noFingerprints).toMatchObject({
      code: 'invalid_argument',
      details: { field: 'dtlsParameters.fingerprints' },
    });

    // Unknown ids.
    expect(
      await failure(() =>
        node.connectTransport('nope', { fingerprints: [{ algorithm: 'sha-256', value: 'AB:CD' }] }),
      ),
    ).toMatchObject({
      code: 'not_found',
      message: expect.stringContaining('transport nope'),
    });
    expect(await failure(() => node.resumeConsumer('nope'))).toMatchObject({ code: 'not_found' });
    expect(await failure(() => node.pauseProducer('nope'))).toMatchObject({ code: 'not_found' });
    expect(await failure(() => node.getStats('nobody'))).toMatchObject({ code: 'not_found' });
    expect(
      await failure(() =>
        node.createTransport({ streamId: 'no-such-stream', peerId: 'p', direction: 'recv' }),
      ),
    ).toMatchObject({
      code: 'not_found',
      message: expect.stringContaining('no-such-stream'),
    });
    expect(
      await failure(() =>
        node.createTransport({ streamId: 'robust', peerId: 'p', direction: 'sideways' as 'recv' }),
      ),
    ).toMatchObject({ code: 'invalid_argument', details: { field: 'direction' } });

    // Someone else's transport, the wrong direction, capabilities that cannot receive Opus.
    const capabilities = await node.getRouterRtpCapabilities('robust');
    expect(
      await failure(() =>
        node.consume({ transportId, peerId: 'robust-healthy', rtpCapabilities: capabilities }),
      ),
    ).toMatchObject({
      code: 'permission_denied',
    });
    expect(
      await failure(() =>
        node.consume({ transportId, peerId: 'robust-victim', rtpCapabilities: { codecs: [] } }),
      ),
    ).toMatchObject({ code: 'invalid_argument', details: { field: 'rtpCapabilities' } });
    expect(
      await failure(() =>
        node.consume({
          transportId,
          peerId: 'robust-victim',
          rtpCapabilities: {
            codecs: [{ kind: 'audio', mimeType: 'audio/PCMU', clockRate: 8000, preferredPayloadType: 0 }],
          },
        }),
      ),
    ).toMatchObject({ code: 'invalid_argument', message: expect.stringContaining('audio/opus') });
    expect(
      await failure(() =>
        node.produce({ transportId, peerId: 'robust-victim', kind: 'audio', rtpParameters: { codecs: [] } }),
      ),
    ).toMatchObject({ code: 'invalid_argument', details: { field: 'rtpParameters.codecs' } });
    expect(
      await failure(() =>
        node.produce({
          transportId,
          peerId: 'robust-victim',
          kind: 'video' as 'audio',
          rtpParameters: { codecs: [{ mimeType: 'video/VP8', payloadType: 96, clockRate: 90000 }] },
        }),
      ),
    ).toMatchObject({ code: 'invalid_argument', message: expect.stringContaining('only audio') });

    // A second broadcaster on a stream that has one.
    const intruder = await node.createTransport({
      streamId: 'robust',
      peerId: 'robust-intruder',
      direction: 'send',
    });
    expect(
      await failure(() =>
        node.produce({
          transportId: intruder.transportId,
          peerId: 'robust-intruder',
          kind: 'audio',
          rtpParameters: {
            codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2 }],
            encodings: [{ ssrc: 1111 }],
          },
        }),
      ),
    ).toMatchObject({
      code: 'failed_precondition',
      message: expect.stringContaining('already has a broadcaster'),
    });
    await node.closePeer('robust-intruder');

    // On a stream without a broadcaster, RTP parameters that pass the shape check but not mediasoup's own
    // validation, or name a codec the router lacks, are refused as bad arguments.
    await node.openStream('robust-empty');
    const sender = await node.createTransport({
      streamId: 'robust-empty',
      peerId: 'robust-sender',
      direction: 'send',
    });
    for (const codec of [
      { mimeType: 'nonsense', payloadType: 111, clockRate: 48000 },
      { mimeType: 'audio/PCMU', payloadType: 0, clockRate: 8000 },
    ]) {
      const refused = await failure(() =>
        node.produce({
          transportId: sender.transportId,
          peerId: 'robust-sender',
          kind: 'audio',
          rtpParameters: { codecs: [codec], encodings: [{ ssrc: 2222 }] },
        }),
      );
      expect(refused).toMatchObject({
        code: 'invalid_argument',
        details: { field: expect.stringMatching(/^rtpParameters/) },
      });
      console.info(`refused ${codec.mimeType}: ${refused.message}`);
    }
    await node.closeStream('robust-empty');

    // Well-formed DTLS parameters with the wrong fingerprint: the handshake fails, the transport is closed.
    const dtlsStates = recordEvents('transportDtlsState');
    const tampered = await TestListener.transportOnly(node, {
      streamId: 'robust',
      peerId: 'robust-tampered',
      tamperDtls: true,
    });
    listeners.push(tampered);
    await tampered.consume().catch(() => undefined);
    await until(
      () => dtlsStates.some((event) => event.peerId === 'robust-tampered' && event.state === 'failed'),
      { what: 'DTLS to fail for the tampered fingerprint' },
    );
    expect(
      await failure(() =>
        node.connectTransport(tampered.info?.transportId ?? '', {
          fingerprints: [{ algorithm: 'sha-256', value: 'AB:CD' }],
        }),
      ),
    ).toMatchObject({
      code: 'not_found',
    });

    // A second connect of a connected transport (with a well-formed fingerprint, so only the state is wrong).
    expect(
      await failure(() =>
        node.connectTransport(healthy.info?.transportId ?? '', {
          fingerprints: [{ algorithm: 'sha-256', value: Array(32).fill('AB').join(':') }],
        }),
      ),
    ).toMatchObject({ code: 'failed_precondition', message: expect.stringContaining('already connected') });

    // Nothing crashed, and the healthy listener still hears the stream.
    expect((await node.getWorkers()).map((worker) => worker.pid)).toEqual(pids);
    await healthy.waitForRms(source.rms, { frames: 20 });
  });

  it('gives "stream has ended" to a consume, transport or capabilities request after the stream closed', async () => {
    const ended = recordEvents('streamEnded');
    const closedProducers = recordEvents('producerClosed');
    await publish('ending');
    const early = await TestListener.transportOnly(node, { streamId: 'ending', peerId: 'ending-listener' });
    listeners.push(early);
    const capabilities = await node.getRouterRtpCapabilities('ending');
    await node.closeStream('ending');
    expect(ended).toContainEqual({ streamId: 'ending', reason: 'closed' });
    expect(closedProducers).toContainEqual(
      expect.objectContaining({ streamId: 'ending', reason: 'stream-ended' }),
    );

    const transportId = early.info?.transportId ?? '';
    for (const call of [
      () => node.consume({ transportId, peerId: 'ending-listener', rtpCapabilities: capabilities }),
      () => node.createTransport({ streamId: 'ending', peerId: 'late', direction: 'recv' }),
      () => node.getRouterRtpCapabilities('ending'),
    ]) {
      expect(await failure(call)).toMatchObject({
        code: 'failed_precondition',
        message: 'stream ending has ended',
        details: { reason: 'stream_ended' },
      });
    }
    await node.closeStream('ending'); // idempotent

    // The other streams are untouched.
    const listener = listeners.find((candidate) => candidate.options.peerId === 'sine-listener');
    await listener?.waitForRms(source.rms, { frames: 20 });
  });
});
