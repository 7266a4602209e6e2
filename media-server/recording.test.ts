/**
 * Recording on a real media node: a wrtc broadcaster's Opus crosses a PlainTransport into a real
 * ffmpeg, whose Ogg segments land under the stream's prefix with their wall-clock times. Killing
 * that ffmpeg restarts it; the segments then leave a gap of the length it was dead, and the
 * restart is counted and logged. A stream whose prefix holds no manifest is not recorded.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  parseSegmentKey,
  recordingManifestKey,
  recordingPrefix,
  recordingSegmentsPrefix,
  type SegmentRef,
} from '../common/contracts/index.js';
import { createLogger, ffprobe, loadConfig, renderMetrics } from '../common/index.js';
import { FsBlobStorage } from '../common/ports/index.js';
import { type MediaNode, startMediaNode } from './index.js';
import { installWrtcGlobals, SineSource, TestPublisher, until } from './testing/wrtc-peers.js';

let node: MediaNode;
let root: string;
let blobs: FsBlobStorage;
const logLines: Record<string, unknown>[] = [];
const source = new SineSource({ frequency: 440, amplitude: 0.5 });
const publishers: TestPublisher[] = [];

async function segmentsOf(streamId: string): Promise<(SegmentRef & { key: string })[]> {
  const listed = await blobs.list(recordingSegmentsPrefix(streamId));
  return listed.flatMap((blob) => {
    const segment = parseSegmentKey(blob.key);
    return segment ? [segment] : [];
  });
}

async function metric(name: string): Promise<number> {
  const { body: text } = await renderMetrics();
  const line = text.split('\n').find((row) => row.startsWith(`${name}{`) && row.includes('node="rec-test"'));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

async function prepare(streamId: string): Promise<void> {
  const manifest = { streamId: 1, ownerId: 1, preparedAt: new Date().toISOString() };
  await blobs.put(recordingManifestKey(streamId), Buffer.from(JSON.stringify(manifest)), 'application/json');
}

beforeAll(async () => {
  installWrtcGlobals();
  root = await mkdtemp(path.join(tmpdir(), 'veza-recording-'));
  blobs = new FsBlobStorage({ root, baseUrl: 'http://localhost' });
  const config = loadConfig({
    MEDIA_WORKERS: '1',
    VEZA_NODE_ID: 'rec-test',
    MEDIA_LISTEN_IP: '127.0.0.1',
    RECORDING_SEGMENT_S: '1',
  });
  // The log is read back: a recorder's death must be told.
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim()) logLines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  node = await startMediaNode({
    config,
    log: createLogger({ level: 'info', name: 'rec-test', destination: sink }),
    blobs,
  });
  source.start();
});

afterAll(async () => {
  for (const publisher of publishers) publisher.close();
  source.stop();
  await node?.close();
  await rm(root, { recursive: true, force: true });
});

describe('recording on the media node', () => {
  it('uploads Ogg Opus segments stamped with wall-clock times, and a killed ffmpeg leaves a gap of its downtime', async () => {
    const streamId = 'rec-kill';
    await prepare(streamId);
    await node.openStream(streamId);
    await node.recorderReady();
    const restartsBefore = await metric('veza_recording_restarts_total');
    const publishedAt = Date.now();
    const publisher = await TestPublisher.start(node, { streamId, peerId: `${streamId}-b` }, source);
    publishers.push(publisher);
    // When the producer's first packets arrive (its DTLS connects after produce() returns).
    const firstPacketAt = await until(
      async () => ((await node.getStats(`${streamId}-b`)).producer?.packetCount ?? 0) > 0 && Date.now(),
      { intervalMs: 10, what: 'the first packet' },
    );
    const firstPid = await until(() => node.recorderPid(streamId), { what: 'the recorder ffmpeg' });
    await until(async () => (await segmentsOf(streamId)).length >= 2, {
      timeoutMs: 15_000,
      what: 'two segments',
    });

    const killedAt = Date.now();
    process.kill(firstPid, 'SIGKILL');
    const secondPid = await until(
      () => {
        const pid = node.recorderPid(streamId);
        return pid !== undefined && pid !== firstPid ? pid : undefined;
      },
      { what: 'the restarted recorder' },
    );
    expect(secondPid).not.toBe(firstPid);
    const restartedAt = Date.now();
    const before = (await segmentsOf(streamId)).length;
    await until(async () => (await segmentsOf(streamId)).length >= before + 2, {
      timeoutMs: 15_000,
      what: 'segments after the restart',
    });
    const stoppedAt = Date.now();
    await node.closeStream(streamId);
    const closedAt = Date.now();
    // Closing the stream flushes the last segment; it is uploaded once the recorder settles.
    await until(() => node.recorderPid(streamId) === undefined, { what: 'the recorder to stop' });
    await until(
      async () => {
        const all = await segmentsOf(streamId);
        const last = all.at(-1);
        return last && last.startMs + last.durationMs >= stoppedAt - 1500;
      },
      { what: 'the final segment' },
    );

    const segments = await segmentsOf(streamId);
    // The timeline is the wall clock: from the producer's first packet (ffmpeg stood by, bound,
    // before it opened) to the stream's close, within a fraction of a second at both ends.
    const first = segments[0] as SegmentRef;
    const last = segments.at(-1) as SegmentRef;
    expect(first.startMs).toBeGreaterThanOrEqual(publishedAt);
    console.info(`recording started ${first.startMs - firstPacketAt} ms after the first packet was seen`);
    expect(Math.abs(first.startMs - firstPacketAt)).toBeLessThan(250);
    expect(Math.abs(last.startMs + last.durationMs - closedAt)).toBeLessThan(500);
    for (const segment of segments) {
      const probe = await ffprobe(path.join(root, segment.key));
      expect(probe.streams[0]).toMatchObject({ codec_name: 'opus', codec_type: 'audio', sample_rate: 48000 });
      expect(probe.format.formatName).toBe('ogg');
      expect(Math.abs((probe.format.durationS ?? 0) * 1000 - segment.durationMs)).toBeLessThan(150);
    }
    // Two writers (the first ffmpeg and its replacement), each with contiguous segments.
    const writers = [...new Set(segments.map((segment) => segment.writer))];
    expect(writers).toHaveLength(2);
    const gaps = segments.slice(1).map((segment, i) => {
      const previous = segments[i] as SegmentRef;
      return { at: segment.startMs, ms: segment.startMs - (previous.startMs + previous.durationMs) };
    });
    const largest = gaps.reduce((a, b) => (b.ms > a.ms ? b : a));
    // The gap spans the kill: at least the time from the kill to the restart, less than a segment more.
    expect(largest.at).toBeGreaterThanOrEqual(killedAt);
    // What was lost: the open segment (under 1 s here) and the time to start again.
    expect(largest.ms).toBeGreaterThanOrEqual(restartedAt - killedAt - 50);
    expect(largest.ms).toBeLessThan(restartedAt - killedAt + 1500);
    for (const gap of gaps.filter((g) => g !== largest)) expect(Math.abs(gap.ms)).toBeLessThan(120);
    console.info(`recorder gap after kill: ${largest.ms} ms (kill to restart ${restartedAt - killedAt} ms)`);

    expect(await metric('veza_recording_restarts_total')).toBe(restartsBefore + 1);
    expect(await metric('veza_recording_segments_total')).toBeGreaterThanOrEqual(segments.length);
    expect(await metric('veza_recording_bytes_total')).toBeGreaterThan(0);
    await until(async () => (await metric('veza_recording_recorders')) === 0, {
      what: 'no recorder running',
    });
    expect(logLines.some((line) => String(line.msg).startsWith('recorder died'))).toBe(true);
  });

  it('records nothing for a stream whose prefix holds no manifest (recording turned off)', async () => {
    const streamId = 'rec-off';
    await node.openStream(streamId);
    const publisher = await TestPublisher.start(node, { streamId, peerId: `${streamId}-b` }, source);
    publishers.push(publisher);
    // The producer is live, and the recorded stream beside it got its recorder in this time.
    await until(async () => ((await node.getStats(`${streamId}-b`)).producer?.packetCount ?? 0) > 100, {
      what: 'the producer to carry audio',
    });
    expect(node.recorderPid(streamId)).toBeUndefined();
    expect(await blobs.list(recordingPrefix(streamId))).toEqual([]);
    await node.closeStream(streamId);
  });
});
