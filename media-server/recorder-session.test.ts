/**
 * A recorder session against what a WebRTC sender puts on the wire besides audio: padding-only
 * RTP packets (libwebrtc pads the audio stream to probe the bandwidth, often right after it
 * connects). An ffmpeg sends a tone as Opus RTP through a relay that slips a padding-only packet
 * in after every few (renumbering the rest), into a producer on a real mediasoup router, which
 * forwards them like any packet; the session records the producer, and every segment it stores
 * reads back whole: none stops early at an empty packet, which would join as silence. When the
 * producer closes after its packets stopped, the session ends at once all the same.
 */
import { createSocket } from 'node:dgram';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { types as ms } from 'mediasoup';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSegmentKey, recordingSegmentsPrefix } from '../common/contracts/index.js';
import { createLogger, runFfmpeg } from '../common/index.js';
import { FsBlobStorage } from '../common/ports/index.js';
import { decodeMono } from '../common/testing/index.js';
import { MEDIA_CODECS } from './codecs.js';
import { loadMediasoup } from './load-mediasoup.js';
import { RecorderSession } from './recorder-session.js';
import { RecordingMetrics } from './recording-metrics.js';

const log = createLogger({ level: 'silent', name: 'recorder-session-test' });
const SSRC = 11_111_111;
const PAYLOAD_TYPE = 100;

let root: string;
let blobs: FsBlobStorage;
let worker: ms.Worker;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'veza-recorder-session-'));
  blobs = new FsBlobStorage({ root, baseUrl: 'http://localhost' });
  const mediasoup = await loadMediasoup();
  worker = await mediasoup.createWorker({ logLevel: 'warn' });
});

afterAll(async () => {
  worker?.close();
  await rm(root, { recursive: true, force: true });
});

describe('a recorder session', () => {
  it('stores segments that read back whole when the sender pads its audio stream with empty packets', async () => {
    const router = await worker.createRouter({ mediaCodecs: MEDIA_CODECS });
    const transport = await router.createPlainTransport({
      listenIp: '127.0.0.1',
      rtcpMux: true,
      comedia: true,
    });
    const producer = await transport.produce({
      kind: 'audio',
      rtpParameters: {
        codecs: [{ mimeType: 'audio/opus', payloadType: PAYLOAD_TYPE, clockRate: 48_000, channels: 2 }],
        encodings: [{ ssrc: SSRC }],
      },
    });
    const session = RecorderSession.prepare({
      blobs,
      segmentSeconds: 1,
      log,
      metrics: new RecordingMetrics('recorder-session-test'),
    });
    expect(await session.ready).toBe(true);
    session.feed({ streamId: 'padded', router, producer, writer: 'padded.1', log });

    // The relay: every packet on to the producer's transport, with a padding-only packet (same
    // SSRC and timestamp, the next sequence number, 8 bytes of padding) after every fifth RTP one.
    const relay = createSocket('udp4');
    await new Promise<void>((resolve) => relay.bind(0, '127.0.0.1', resolve));
    let rtp = 0;
    let injected = 0;
    relay.on('message', (packet) => {
      const isRtp = (packet[1] ?? 0) % 128 === PAYLOAD_TYPE;
      const forwarded = Buffer.from(packet);
      if (isRtp) forwarded.writeUInt16BE((packet.readUInt16BE(2) + injected) % 65_536, 2);
      relay.send(forwarded, transport.tuple.localPort, '127.0.0.1');
      if (!isRtp || ++rtp % 5 !== 0) return;
      injected += 1;
      const padding = Buffer.alloc(20);
      packet.copy(padding, 0, 0, 12);
      padding[0] = 0x80 | 0x20; // version 2, padding bit, no extension
      padding.writeUInt16BE((packet.readUInt16BE(2) + injected) % 65_536, 2);
      padding[padding.length - 1] = 8;
      relay.send(padding, transport.tuple.localPort, '127.0.0.1');
    });
    const relayPort = relay.address().port;
    try {
      await runFfmpeg({
        input: 'sine=f=440:d=4',
        inputOptions: ['-re', '-f', 'lavfi'],
        outputs: [
          {
            target: `rtp://127.0.0.1:${relayPort}?rtcpport=${relayPort}`,
            options: [
              '-ac',
              '2',
              '-ar',
              '48000',
              '-c:a',
              'libopus',
              '-payload_type',
              String(PAYLOAD_TYPE),
              '-ssrc',
              String(SSRC),
              '-f',
              'rtp',
            ],
          },
        ],
      });
    } finally {
      relay.close();
    }
    // Every packet, the padding too, crossed the producer.
    expect(injected).toBeGreaterThan(20);
    expect((await producer.getStats())[0]?.packetCount ?? 0).toBeGreaterThanOrEqual(rtp + injected);
    // The broadcaster leaves: the session ends with its producer, at once although no packet
    // follows (ffmpeg's RTP input would wait 10 s for one).
    const closedAt = Date.now();
    producer.close();
    expect(await session.ended).toEqual({ cause: 'stopped' });
    expect(Date.now() - closedAt).toBeLessThan(3000);

    const segments = (await blobs.list(recordingSegmentsPrefix('padded')))
      .flatMap((blob) => {
        const segment = parseSegmentKey(blob.key);
        // The join skips an empty last segment (the stop came as one began): so does this.
        return segment && segment.durationMs > 0 ? [segment] : [];
      })
      .sort((a, b) => a.startMs - b.startMs);
    expect(segments.length).toBeGreaterThanOrEqual(3);
    for (const [index, segment] of segments.entries()) {
      const audio = await decodeMono(path.join(root, segment.key), path.join(root, `segment-${index}.pcm`));
      expect(Math.abs(audio.durationS - segment.durationMs / 1000)).toBeLessThan(0.1);
      expect(audio.toneAt(audio.durationS / 2 - 0.1).share).toBeGreaterThan(0.8);
    }
    router.close();
  });
});
