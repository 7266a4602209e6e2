/**
 * One contract for both MediaGateway adapters: the in-process node, and the node reached
 * through the event bus (in-process bus and real NATS), as the edge uses them in standalone
 * and cluster mode. Results, errors (code, message, field) and events must not differ.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MEDIA_FAILURE, mediaRequestSubject, VezaError } from '../../common/contracts/index.js';
import { createLogger, loadConfig } from '../../common/index.js';
import { type EventBus, MemoryEventBus, NatsEventBus } from '../../common/ports/index.js';
import { clusterServices } from '../../common/testing/index.js';
import { type MediaNode, serveMediaNodeOverBus, startMediaNode } from '../../media-server/index.js';
import { busMediaGateway, directMediaGateway, type MediaGateway } from './media-gateway.js';

const log = createLogger({ level: 'silent' });
let node: MediaNode;
let dataDir: string;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'veza-gateway-'));
  const config = loadConfig({
    VEZA_DATA_DIR: dataDir,
    VEZA_NODE_ID: 'gateway-test',
    MEDIA_WORKERS: '1',
    MEDIA_LISTEN_IP: '127.0.0.1',
    LOG_LEVEL: 'silent',
  });
  node = await startMediaNode({ config, log });
});
afterAll(async () => {
  await node?.close();
  await rm(dataDir, { recursive: true, force: true });
});

interface Variant {
  gateway: MediaGateway;
  nodeId: string;
  bus?: EventBus;
  close(): Promise<void>;
}

const variants: Record<string, () => Promise<Variant>> = {
  direct: async () => ({
    gateway: directMediaGateway(node),
    nodeId: node.nodeId,
    close: async () => undefined,
  }),
  'bus (in-process)': async () => overBus(new MemoryEventBus({ log })),
  'bus (NATS)': async () => overBus(await NatsEventBus.connect(clusterServices.natsUrl, { log })),
};

async function overBus(bus: EventBus): Promise<Variant> {
  // A node id per run, so parallel runs on the same NATS server do not answer each other.
  const nodeId = `media-${randomBytes(4).toString('hex')}`;
  // Its own presence group too: no control plane of another run places streams on this node.
  const served = serveMediaNodeOverBus(bus, node, nodeId, log, { cluster: nodeId });
  const gateway = busMediaGateway({ bus, log, timeoutMs: 5_000 });
  await Promise.all([served.ready, gateway.ready]);
  return {
    gateway,
    nodeId,
    bus,
    async close() {
      await gateway.close();
      await served.close();
      await bus.close();
    },
  };
}

async function failure(promise: Promise<unknown>): Promise<VezaError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof VezaError) return error;
    throw error;
  }
  throw new Error('expected the call to fail');
}

describe.each(Object.keys(variants))('MediaGateway contract: %s', (name) => {
  let variant: Variant;
  const streamId = `gw-${name.replace(/\W+/g, '-')}-${randomBytes(3).toString('hex')}`;

  beforeAll(async () => {
    variant = await variants[name]!();
  });
  afterAll(async () => {
    await variant?.close();
  });

  it('opens a stream and hands out its Opus capabilities and transports as JSON', async () => {
    const media = variant.gateway.node(variant.nodeId);
    const opened = await media.openStream(streamId);
    expect(opened.rtpCapabilities.codecs?.some((codec) => codec.mimeType === 'audio/opus')).toBe(true);
    expect(await media.getRouterRtpCapabilities(streamId)).toEqual(opened.rtpCapabilities);
    const transport = await media.createTransport({ streamId, peerId: 'peer-1', direction: 'recv' });
    expect(transport).toMatchObject({
      transportId: expect.any(String),
      iceParameters: { usernameFragment: expect.any(String) },
      dtlsParameters: {
        fingerprints: expect.arrayContaining([expect.objectContaining({ algorithm: 'sha-256' })]),
      },
    });
    expect(await media.listenerCount(streamId)).toBe(0);
    await media.closePeer('peer-1');
  });

  it('passes the node errors through with code, message and field', async () => {
    const media = variant.gateway.node(variant.nodeId);
    const transport = await media.createTransport({ streamId, peerId: 'peer-2', direction: 'recv' });
    const bad = await failure(
      media.connectTransport(transport.transportId, {
        fingerprints: [{ algorithm: 'sha-256', value: 'nope' }],
      }),
    );
    expect(bad).toMatchObject({
      code: 'invalid_argument',
      details: { field: 'dtlsParameters.fingerprints.0.value' },
    });
    const missing = await failure(media.closeStream('never-opened'));
    expect(missing).toMatchObject({
      code: 'not_found',
      message: 'stream never-opened is not open on this media node',
    });
    const noAudio = await failure(
      media.consume({
        transportId: transport.transportId,
        peerId: 'peer-2',
        rtpCapabilities: {
          codecs: [{ kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 }],
        },
      }),
    );
    expect(noAudio).toMatchObject({
      code: 'failed_precondition',
      details: { reason: MEDIA_FAILURE.noAudio },
    });
    await media.closePeer('peer-2');
  });

  it('delivers node events with the node id', async () => {
    const ended = new Promise<{ event: unknown; nodeId: string }>((resolve) => {
      const off = variant.gateway.on('streamEnded', (event, nodeId) => {
        if (event.streamId !== streamId) return;
        off();
        resolve({ event, nodeId });
      });
    });
    const media = variant.gateway.node(variant.nodeId);
    await media.closeStream(streamId);
    expect(await ended).toEqual({ event: { streamId, reason: 'closed' }, nodeId: variant.nodeId });
    // What the edge tells its clients rests on this reason, in both modes.
    expect(await failure(media.getRouterRtpCapabilities(streamId))).toMatchObject({
      code: 'failed_precondition',
      message: `stream ${streamId} has ended`,
      details: { reason: MEDIA_FAILURE.streamEnded },
    });
  });
});

describe.each(['bus (in-process)', 'bus (NATS)'])('the bus adapter: %s', (name) => {
  let variant: Variant;

  beforeAll(async () => {
    variant = await variants[name]!();
  });
  afterAll(async () => {
    await variant?.close();
  });

  it('answers only the media-node methods the edge may call, and only for bus-safe node ids', async () => {
    const bus = variant.bus!;
    const subject = mediaRequestSubject(variant.nodeId, 'openStream').replace(/openStream$/, 'close');
    expect(await failure(bus.request(subject, { args: [] }))).toMatchObject({ code: 'unimplemented' });
    const malformed = await failure(
      bus.request(mediaRequestSubject(variant.nodeId, 'openStream'), { args: 'x' }),
    );
    expect(malformed).toMatchObject({ code: 'invalid_argument', details: { field: 'args' } });
    expect(() => variant.gateway.node('bad.node')).toThrow(/cannot be reached/);
  });
});
