/**
 * Joins a stream's recorded segments into one lossless file on the wall clock's timeline: each
 * segment is decoded (gaps inside it, from DTX, filled with silence by aresample's async mode) and
 * laid at its recorded start; the time between segments (a recorder restart, a failover, a
 * broadcaster reconnecting) becomes silence of its real length, and where two writers overlap
 * (a failover's handover) the earlier one wins. The result is FLAC, the replay track's source.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import {
  parseSegmentKey,
  recordingSegmentsPrefix,
  recordingWritersPrefix,
  replaySourceKey,
  type SegmentRef,
} from '../common/contracts/index.js';
import { type Logger, runFfmpeg } from '../common/index.js';
import type { BlobStorage } from '../common/ports/index.js';

const SAMPLE_RATE = 48_000;
const CHANNELS = 2;
const BYTES_PER_FRAME = 2 * CHANNELS;

export interface JoinedRecording {
  sourceKey: string;
  /** Wall-clock start of the first segment, epoch ms. */
  startedAtMs: number;
  durationS: number;
  /** Silence laid in between segments, seconds. */
  gapS: number;
  gaps: { atS: number; lengthS: number }[];
}

export interface JoinOptions {
  blobs: BlobStorage;
  streamId: number;
  log: Logger;
  signal?: AbortSignal;
  tempDir?: string;
}

/** Null when the stream left no segment (it never had audio). */
export async function joinRecording(options: JoinOptions): Promise<JoinedRecording | null> {
  const { blobs, streamId, log } = options;
  const segments = (await blobs.list(recordingSegmentsPrefix(streamId)))
    .flatMap((blob) => {
      const segment = parseSegmentKey(blob.key);
      return segment && segment.durationMs > 0 ? [segment] : [];
    })
    .sort((a, b) => a.startMs - b.startMs || a.key.localeCompare(b.key));
  const first = segments[0];
  if (!first) return null;
  const endMs = await stoppedEnd(blobs, streamId, segments);
  const dir = await mkdtemp(path.join(options.tempDir ?? tmpdir(), 'veza-join-'));
  try {
    const pcmFile = path.join(dir, 'timeline.pcm');
    const gaps = await layTimeline(segments, first.startMs, endMs, dir, pcmFile, options);
    const flacFile = path.join(dir, 'replay.flac');
    await runFfmpeg({
      input: pcmFile,
      inputOptions: ['-f', 's16le', '-ar', String(SAMPLE_RATE), '-ac', String(CHANNELS)],
      outputs: [{ target: flacFile, options: ['-c:a', 'flac', '-y'] }],
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const frames = (await stat(pcmFile)).size / BYTES_PER_FRAME;
    const sourceKey = replaySourceKey(streamId);
    await blobs.put(sourceKey, createReadStream(flacFile), 'audio/flac');
    const gapS = gaps.reduce((sum, gap) => sum + gap.lengthS, 0);
    for (const gap of gaps) {
      log.warn({ streamId, atS: gap.atS, lengthS: gap.lengthS }, 'recording gap filled with silence');
    }
    return { sourceKey, startedAtMs: first.startMs, durationS: frames / SAMPLE_RATE, gapS, gaps };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * When the recording ends: the last segment's end, or a little later when its recorder stopped
 * later than that. ffmpeg drops the packets its input still buffers when told to stop (a fraction
 * of a second), so the recorder's stop time (in its `.done` marker) is when the broadcast ended.
 */
async function stoppedEnd(
  blobs: BlobStorage,
  streamId: number,
  segments: (SegmentRef & { key: string })[],
): Promise<number> {
  const lastEnd = new Map<string, number>();
  for (const segment of segments) {
    lastEnd.set(
      segment.writer,
      Math.max(lastEnd.get(segment.writer) ?? 0, segment.startMs + segment.durationMs),
    );
  }
  let end = Math.max(...lastEnd.values());
  for (const marker of await blobs.list(recordingWritersPrefix(streamId))) {
    const name = marker.key.slice(marker.key.lastIndexOf('/') + 1);
    if (!name.endsWith('.done')) continue;
    const ended = lastEnd.get(name.slice(0, -'.done'.length));
    if (ended === undefined) continue;
    const stoppedAt = Date.parse((await buffer(await blobs.get(marker.key))).toString('utf8'));
    // More than a couple of seconds would not be ffmpeg's buffer: trust the segments then.
    if (Number.isFinite(stoppedAt) && stoppedAt > ended && stoppedAt - ended < MAX_TAIL_MS) {
      end = Math.max(end, stoppedAt);
    }
  }
  return end;
}

const MAX_TAIL_MS = 2000;

/** Writes the raw timeline; returns the gaps it filled (shorter ones are jitter, not gaps). */
async function layTimeline(
  segments: (SegmentRef & { key: string })[],
  originMs: number,
  endMs: number,
  dir: string,
  pcmFile: string,
  options: JoinOptions,
): Promise<{ atS: number; lengthS: number }[]> {
  const out = createWriteStream(pcmFile);
  const write = (chunk: Buffer) =>
    new Promise<void>((resolve, reject) => out.write(chunk, (error) => (error ? reject(error) : resolve())));
  const gaps: { atS: number; lengthS: number }[] = [];
  let cursor = 0; // frames written so far
  try {
    for (const segment of segments) {
      const startFrame = Math.round(((segment.startMs - originMs) * SAMPLE_RATE) / 1000);
      const frames = Math.round((segment.durationMs * SAMPLE_RATE) / 1000);
      const pcm = await decodeSegment(segment.key, dir, options);
      // Shorter than listed by more than a packet or two: the segment could not be read to its end.
      if (pcm.length < (frames - SAMPLE_RATE * 0.1) * BYTES_PER_FRAME) {
        options.log.warn(
          {
            key: segment.key,
            listedS: segment.durationMs / 1000,
            decodedS: pcm.length / BYTES_PER_FRAME / SAMPLE_RATE,
          },
          'a recording segment decoded short: the rest of it is silence',
        );
      }
      // Exactly the listed length: the decoder's padding must not shift what follows.
      const exact = Buffer.alloc(frames * BYTES_PER_FRAME);
      pcm.copy(exact, 0, 0, Math.min(pcm.length, exact.length));
      if (startFrame > cursor) {
        const silence = startFrame - cursor;
        // Under 60 ms is the jitter of two sessions' anchors, not a gap worth telling.
        if (silence > SAMPLE_RATE * 0.06)
          gaps.push({ atS: cursor / SAMPLE_RATE, lengthS: silence / SAMPLE_RATE });
        await writeSilence(write, silence);
        cursor = startFrame;
      }
      const skip = cursor - startFrame; // an overlap: what is already laid stays
      if (skip < frames) {
        await write(exact.subarray(skip * BYTES_PER_FRAME));
        cursor = startFrame + frames;
      }
    }
    const endFrame = Math.round(((endMs - originMs) * SAMPLE_RATE) / 1000);
    if (endFrame > cursor) await writeSilence(write, endFrame - cursor);
  } finally {
    await new Promise<void>((resolve, reject) =>
      out.end((error?: Error | null) => (error ? reject(error) : resolve())),
    );
  }
  return gaps;
}

async function writeSilence(write: (chunk: Buffer) => Promise<void>, frames: number): Promise<void> {
  const block = Buffer.alloc(SAMPLE_RATE * BYTES_PER_FRAME); // one second
  let left = frames * BYTES_PER_FRAME;
  while (left > 0) {
    const size = Math.min(left, block.length);
    await write(block.subarray(0, size));
    left -= size;
  }
}

/** One segment as 48 kHz stereo s16le, its inner timestamp gaps filled with silence. */
async function decodeSegment(key: string, dir: string, options: JoinOptions): Promise<Buffer> {
  const input = path.join(dir, 'segment.ogg');
  const output = path.join(dir, 'segment.pcm');
  await writeFile(input, await buffer(await options.blobs.get(key)));
  await runFfmpeg({
    input,
    outputs: [
      {
        target: output,
        options: [
          '-af',
          'aresample=async=1:first_pts=0',
          '-f',
          's16le',
          '-ar',
          String(SAMPLE_RATE),
          '-ac',
          String(CHANNELS),
          '-y',
        ],
      },
    ],
    ...(options.signal ? { signal: options.signal } : {}),
  });
  return readFile(output);
}
