/**
 * The join of recorded segments, with real ffmpeg: segments land at their wall-clock times, the
 * time between them is silence of its length, and a stream without segments makes nothing.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordingSegmentKey, recordingWriterKey, replaySourceKey } from '../common/contracts/index.js';
import { createLogger, ffprobe, runFfmpeg } from '../common/index.js';
import { FsBlobStorage } from '../common/ports/index.js';
import { joinRecording } from './recording-join.js';
import { makeAudio } from './test-audio.js';

let root: string;
let work: string;
let blobs: FsBlobStorage;
const log = createLogger({ level: 'silent' });

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'veza-join-blobs-'));
  work = await mkdtemp(path.join(tmpdir(), 'veza-join-test-'));
  blobs = new FsBlobStorage({ root, baseUrl: 'http://localhost' });
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
});

/** Stores a tone segment of `seconds` at `startMs` on the wall clock. */
async function segment(streamId: number, startMs: number, seconds: number, writer: string): Promise<void> {
  const file = await makeAudio(
    path.join(work, `${writer}-${startMs}.ogg`),
    'opus',
    `sine=f=440:d=${seconds}`,
    {
      sampleRate: 48_000,
    },
  );
  const key = recordingSegmentKey(streamId, { startMs, durationMs: seconds * 1000, writer });
  await blobs.put(key, await readFile(file), 'audio/ogg');
}

/** RMS (16-bit units) of the joined file per 100 ms window. */
async function windowsRms(key: string): Promise<number[]> {
  const flac = path.join(work, 'joined.flac');
  await writeFile(flac, await buffer(await blobs.get(key)));
  const pcm = path.join(work, 'joined.pcm');
  await runFfmpeg({ input: flac, outputs: [{ target: pcm, options: ['-f', 's16le', '-ac', '1', '-y'] }] });
  const data = await readFile(pcm);
  const samples = new Int16Array(data.buffer, data.byteOffset, data.length / 2);
  const window = 4800;
  const out: number[] = [];
  for (let start = 0; start + window <= samples.length; start += window) {
    let sum = 0;
    for (let i = start; i < start + window; i++) sum += (samples[i] ?? 0) ** 2;
    out.push(Math.sqrt(sum / window));
  }
  return out;
}

describe('joinRecording', () => {
  it('lays segments at their wall-clock times with silence of the right length between them', async () => {
    const t0 = Date.UTC(2026, 0, 1, 12);
    await segment(7, t0, 2, 'node-a.1');
    await segment(7, t0 + 2000, 2, 'node-a.1');
    // The recorder died and came back 1.5 s later (another session).
    await segment(7, t0 + 5500, 1, 'node-a.2');

    const joined = await joinRecording({ blobs, streamId: 7, log });
    expect(joined).not.toBeNull();
    expect(joined?.sourceKey).toBe(replaySourceKey(7));
    expect(joined?.startedAtMs).toBe(t0);
    expect(joined?.durationS).toBeCloseTo(6.5, 3);
    expect(joined?.gaps).toHaveLength(1);
    expect(joined?.gaps[0]?.atS).toBeCloseTo(4, 3);
    expect(joined?.gapS).toBeCloseTo(1.5, 3);

    const probe = await ffprobe(path.join(root, replaySourceKey(7)));
    expect(probe.streams[0]).toMatchObject({ codec_name: 'flac', sample_rate: 48000, channels: 2 });
    expect(probe.format.durationS).toBeCloseTo(6.5, 1);
    const rms = await windowsRms(replaySourceKey(7));
    // Tone over 0.2-3.8 s and 5.7-6.3 s, silence over 4.1-5.4 s.
    for (let i = 2; i < 38; i++) expect(rms[i]).toBeGreaterThan(1000);
    for (let i = 41; i < 54; i++) expect(rms[i]).toBeLessThan(50);
    for (let i = 57; i < 63; i++) expect(rms[i]).toBeGreaterThan(1000);
  });

  it('keeps the earlier writer where two overlap (a failover handover)', async () => {
    const t0 = Date.UTC(2026, 0, 1, 13);
    await segment(8, t0, 2, 'node-a.1');
    await segment(8, t0 + 1500, 2, 'node-b.1');
    const joined = await joinRecording({ blobs, streamId: 8, log });
    expect(joined?.durationS).toBeCloseTo(3.5, 3);
    expect(joined?.gaps).toEqual([]);
  });

  it("runs to a recorder's stop time when ffmpeg dropped the last moment it buffered", async () => {
    const t0 = Date.UTC(2026, 0, 1, 14);
    await segment(10, t0, 2, 'node-a.1');
    const marker = recordingWriterKey(10, 'node-a.1', 'done');
    await blobs.put(marker, Buffer.from(new Date(t0 + 2300).toISOString()), 'text/plain');
    expect((await joinRecording({ blobs, streamId: 10, log }))?.durationS).toBeCloseTo(2.3, 3);
    // A stop long after the last segment is not ffmpeg's buffer: the segments stand.
    await blobs.put(marker, Buffer.from(new Date(t0 + 9000).toISOString()), 'text/plain');
    expect((await joinRecording({ blobs, streamId: 10, log }))?.durationS).toBeCloseTo(2, 3);
  });

  it('makes nothing for a stream that never had audio', async () => {
    expect(await joinRecording({ blobs, streamId: 9, log })).toBeNull();
    expect(await blobs.list('streams/9/')).toEqual([]);
  });
});
