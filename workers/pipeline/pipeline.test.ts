/**
 * The pipeline end to end on real ffmpeg, with audio generated here and the file
 * BlobStorage adapter on a temp directory.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsBlobStorage } from '../../common/ports/index.js';
import {
  addCover,
  downloadBlobs,
  listFiles,
  makeAudio,
  measuredLoudness,
  type TestFormat,
} from '../test-audio.js';
import {
  AudioRejectedError,
  type Progress,
  type TranscodeResult,
  trackPrefix,
  transcodeTrack,
} from './index.js';
import type { Waveform } from './waveform.js';

let root: string;
let blobRoot: string;
let work: string;
let blobs: FsBlobStorage;
let nextTrack = 1;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'veza-pipeline-test-'));
  blobRoot = path.join(root, 'blobs');
  work = path.join(root, 'work');
  await mkdir(work);
  blobs = new FsBlobStorage({ root: blobRoot, baseUrl: 'http://localhost:8080' });
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function upload(file: string): Promise<{ trackId: number; sourceKey: string }> {
  const trackId = nextTrack++;
  const sourceKey = `uploads/${trackId}/source`;
  await blobs.put(sourceKey, await readFile(file), 'application/octet-stream');
  return { trackId, sourceKey };
}

async function transcode(
  file: string,
  options: { maxDurationS?: number; waveformPoints?: number; onProgress?: (p: Progress) => void } = {},
): Promise<{ trackId: number; sourceKey: string; result: TranscodeResult }> {
  const { trackId, sourceKey } = await upload(file);
  const result = await transcodeTrack({
    blobs,
    trackId,
    sourceKey,
    maxDurationS: options.maxDurationS ?? 60,
    tempDir: work,
    ...(options.waveformPoints ? { waveformPoints: options.waveformPoints } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  return { trackId, sourceKey, result };
}

/** ffmpeg processes this test process started that are still alive. */
async function ffmpegChildren(): Promise<number[]> {
  const children: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // "pid (comm) state ppid ...": comm may hold spaces, so split after its closing parenthesis.
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (comm === 'ffmpeg' && ppid === process.pid) children.push(Number(entry));
  }
  return children;
}

async function readWaveform(key: string): Promise<Waveform> {
  const chunks: Buffer[] = [];
  for await (const chunk of await blobs.get(key)) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Waveform;
}

interface Input {
  name: string;
  format: TestFormat;
  source: string;
  filter?: string;
  codec: string;
  channels: 1 | 2;
  durationS: number;
  normalisation: 'linear' | 'peak-limited';
}

const inputs: Input[] = [
  // Quiet tone (-50 LUFS), long enough for two full HLS segments and a short last one: +36 dB.
  {
    name: 'quiet',
    format: 'wav',
    source: 'sine=f=440:d=13',
    filter: 'volume=-28dB',
    codec: 'pcm_s16le',
    channels: 2,
    durationS: 13,
    normalisation: 'linear',
  },
  // Loud pink noise (-10 LUFS, peaks at 0 dBTP): a cut of 4 dB.
  {
    name: 'loud',
    format: 'mp3',
    source: 'anoisesrc=d=3:c=pink:a=0.9',
    filter: 'volume=6dB',
    codec: 'mp3',
    channels: 2,
    durationS: 3,
    normalisation: 'linear',
  },
  {
    name: 'steady',
    format: 'flac',
    source: 'sine=f=1000:d=3',
    filter: 'volume=-6dB',
    codec: 'flac',
    channels: 1,
    durationS: 3,
    normalisation: 'linear',
  },
  {
    name: 'noisy',
    format: 'ogg',
    source: 'anoisesrc=d=3:c=brown:a=0.3',
    codec: 'vorbis',
    channels: 2,
    durationS: 3,
    normalisation: 'linear',
  },
  // Dynamic: 4 s loud, 4 s 15 dB quieter (loudness range 15 LU, which loudnorm would have
  // compressed); a plain gain still lands on the target.
  {
    name: 'dynamic',
    format: 'flac',
    source:
      "aevalsrc='if(lt(mod(t,8),4),0.35,0.06)*sin(2*PI*440*t)|if(lt(mod(t,8),4),0.35,0.06)*sin(2*PI*554*t)':d=16:s=44100",
    codec: 'flac',
    channels: 2,
    durationS: 16,
    normalisation: 'linear',
  },
  // Dynamic with sharp peaks: a quiet tone (-29 LUFS) with a click near full scale every second.
  // Reaching -14 LUFS would put the peaks 13 dB over the ceiling: the documented exception.
  {
    name: 'peaky',
    format: 'wav',
    source: "aevalsrc='0.02*sin(2*PI*330*t)+if(lt(mod(t,1),0.002),0.9,0)':d=8:s=44100",
    codec: 'pcm_s16le',
    channels: 2,
    durationS: 8,
    normalisation: 'peak-limited',
  },
];

/** Lossy encoders overshoot the source's true peak a little; this bounds it. */
const ENCODER_OVERSHOOT_DB = 1.5;

describe('transcodeTrack', () => {
  it.each(inputs)('levels $name audio ($format) into Opus, AAC and HLS renditions', async (input) => {
    const file = await makeAudio(
      path.join(root, `in-${input.name}.${input.format}`),
      input.format,
      input.source,
      {
        ...(input.filter ? { filter: input.filter } : {}),
        channels: input.channels,
      },
    );
    const source = await measuredLoudness(file);
    const { trackId, result } = await transcode(file);

    expect(result.metadata).toMatchObject({
      codec: input.codec,
      channels: input.channels,
      sampleRate: 44_100,
    });
    expect(result.metadata.formatName).toContain(input.format);
    expect(result.metadata.durationS).toBeCloseTo(input.durationS, 1);
    expect(result.loudness?.inputI).toBeCloseTo(source.integratedLufs, 0);
    expect(result.loudness?.inputTp).toBeCloseTo(source.truePeakDb, 0);
    expect(result.normalisation).toBe(input.normalisation);
    expect(result.version).toMatch(/^[0-9a-f]{16}$/);
    const prefix = trackPrefix(trackId, result.version);
    expect(result.renditions.map((r) => [r.format, r.codec, r.bitrate, r.key])).toEqual([
      ['opus', 'opus', 96_000, `${prefix}/opus/96k.opus`],
      ['aac', 'aac', 128_000, `${prefix}/aac/128k.m4a`],
      ['hls', 'aac', 128_000, `${prefix}/hls/index.m3u8`],
    ]);
    expect(result.renditions[0]?.url).toBe(`http://localhost:8080/media/${prefix}/opus/96k.opus`);

    const local = path.join(root, `out-${trackId}`);
    await downloadBlobs(blobs, result.keys, prefix, local);
    // The peak-limited exception: the gain stops at the ceiling, so the renditions land where
    // that gain puts the source, below the target.
    const expected =
      input.normalisation === 'linear' ? -14 : source.integratedLufs + (-1 - source.truePeakDb);
    if (input.normalisation === 'peak-limited') expect(expected).toBeLessThan(-14 - 1);
    for (const rendition of ['opus/96k.opus', 'aac/128k.m4a', 'hls/index.m3u8']) {
      const output = await measuredLoudness(path.join(local, rendition));
      const where = `${rendition}: ${output.integratedLufs} LUFS, ${output.truePeakDb} dBTP`;
      expect(Math.abs(output.integratedLufs - expected), where).toBeLessThanOrEqual(1);
      expect(output.truePeakDb, where).toBeLessThanOrEqual(-1 + ENCODER_OVERSHOOT_DB);
    }

    const playlist = await readFile(path.join(local, 'hls/index.m3u8'), 'utf8');
    const durations = [...playlist.matchAll(/#EXTINF:([\d.]+),/g)].map((match) => Number(match[1]));
    const segments = playlist.split('\n').filter((line) => line.endsWith('.ts'));
    expect(playlist).toContain('#EXT-X-ENDLIST');
    expect(segments.length).toBe(durations.length);
    // Every segment the playlist names was published, and nothing else.
    expect(segments.map((segment) => `hls/${segment}`).sort()).toEqual(
      (await listFiles(path.join(local, 'hls'))).filter((f) => f.endsWith('.ts')).map((f) => `hls/${f}`),
    );
    for (const duration of durations.slice(0, -1)) expect(duration).toBeCloseTo(6, 0);
    expect(durations.length).toBe(Math.ceil(input.durationS / 6));

    const waveform = await readWaveform(result.waveformKey);
    expect(waveform.peaks).toHaveLength(1000);
    expect(Math.max(...waveform.peaks)).toBe(1);
  });

  it('computes a waveform of the requested length that is near zero where the audio is silent', async () => {
    // 2 s of tone, then 2 s of digital silence.
    const file = await makeAudio(
      path.join(root, 'half.flac'),
      'flac',
      "aevalsrc='if(lt(t,2),0.5*sin(2*PI*440*t),0)':d=4:s=44100",
    );
    const { result } = await transcode(file, { waveformPoints: 200 });
    const waveform = await readWaveform(result.waveformKey);
    expect(waveform).toMatchObject({ version: 1, points: 200 });
    expect(waveform.peaks).toHaveLength(200);
    expect(waveform.durationS).toBeCloseTo(4, 1);
    const loud = waveform.peaks.slice(5, 95);
    const quiet = waveform.peaks.slice(105, 200);
    expect(Math.min(...loud)).toBeGreaterThan(0.9);
    expect(Math.max(...quiet)).toBeLessThan(0.01);
    for (const peak of waveform.peaks) expect(peak).toBeGreaterThanOrEqual(0);
  });

  it('extracts embedded cover art', async () => {
    const audio = await makeAudio(path.join(root, 'plain.mp3'), 'mp3', 'sine=f=330:d=2');
    const file = await addCover(audio, path.join(root, 'covered.mp3'));
    const { result } = await transcode(file);
    expect(result.coverKey).toMatch(/\/cover\.jpg$/);
    const cover = await blobs.stat(result.coverKey ?? '');
    expect(cover?.contentType).toBe('image/jpeg');
    expect(cover?.size).toBeGreaterThan(100);
    expect(result.metadata.codec).toBe('mp3');
  });

  it('has no cover when the file embeds none', async () => {
    const file = await makeAudio(path.join(root, 'bare.ogg'), 'ogg', 'sine=f=330:d=2');
    const { result } = await transcode(file);
    expect(result.coverKey).toBeNull();
  });

  it('reports progress from 0 to 100 without going backwards', async () => {
    const file = await makeAudio(path.join(root, 'progress.wav'), 'wav', 'sine=f=200:d=20');
    const seen: Progress[] = [];
    await transcode(file, { onProgress: (progress) => seen.push(progress) });
    const percents = seen.map((p) => p.percent);
    expect(percents[0]).toBe(0);
    expect(percents.at(-1)).toBe(100);
    expect([...percents].sort((a, b) => a - b)).toEqual(percents);
    expect(new Set(seen.map((p) => p.stage))).toEqual(
      new Set(['probe', 'loudness', 'renditions', 'waveform', 'publish']),
    );
    // ffmpeg's time reports move the bar inside the long stages, not only between them.
    expect(seen.some((p) => p.stage === 'renditions' && p.percent > 35 && p.percent < 94)).toBe(true);
  });
});

describe('bad files', () => {
  async function expectRejected(file: string, reason: RegExp, maxDurationS = 60): Promise<void> {
    const before = await listFiles(blobRoot);
    const { trackId, sourceKey } = await upload(file);
    const attempt = transcodeTrack({ blobs, trackId, sourceKey, maxDurationS, tempDir: work });
    await expect(attempt).rejects.toThrow(AudioRejectedError);
    await expect(attempt).rejects.toThrow(reason);
    // Only the source itself was added (its owner, the worker, deletes it); no outputs, no temp files.
    expect(await listFiles(blobRoot)).toEqual([...before, sourceKey].sort());
    expect(await listFiles(path.join(blobRoot, 'tracks', String(trackId)))).toEqual([]);
    expect(await listFiles(work)).toEqual([]);
  }

  it('rejects a text file renamed .mp3', async () => {
    const file = path.join(root, 'notes.mp3');
    await writeFile(file, 'These are my lyrics, not a song.\n'.repeat(40));
    await expectRejected(file, /not a recognised audio format/);
  });

  it('rejects a zero-length file', async () => {
    const file = path.join(root, 'empty.mp3');
    await writeFile(file, '');
    await expectRejected(file, /the file is empty/);
  });

  it.each(['wav', 'mp3', 'flac', 'ogg'] as const)('rejects a truncated %s file', async (format) => {
    const file = await makeAudio(path.join(root, `whole.${format}`), format, 'anoisesrc=d=6:c=pink:a=0.3');
    const { size } = await stat(file);
    // Cut at a multiple of 4 bytes: a WAV cut on a sample boundary decodes without any error.
    await truncate(file, Math.floor((size * 0.6) / 4) * 4);
    await expectRejected(file, /truncated|corrupt/);
  });

  it('rejects audio longer than the limit', async () => {
    const file = await makeAudio(path.join(root, 'long.flac'), 'flac', 'sine=f=440:d=4');
    await expectRejected(file, /the audio is 4 s long; the limit is 3 s/, 3);
  });

  it('rejects a picture', async () => {
    const picture = path.join(root, 'picture.mp3');
    const covered = await addCover(
      await makeAudio(path.join(root, 'for-picture.mp3'), 'mp3', 'sine=d=1'),
      path.join(root, 'tmp.mp3'),
    );
    // The cover alone, named like audio.
    await writeFile(picture, await readFile(`${covered}.cover.jpg`));
    await expectRejected(picture, /no audio stream/);
  });

  // Stopped while the analysis decodes, and while both encoders run: every ffmpeg is killed
  // and waited for, and nothing is left in storage or on disk.
  it.each([
    { stage: 'loudness', from: 5 },
    { stage: 'renditions', from: 30 },
  ])('leaves nothing behind when stopped during $stage', async ({ stage, from }) => {
    const file = await makeAudio(path.join(root, `stopped-${stage}.wav`), 'wav', 'sine=f=300:d=120');
    const { trackId, sourceKey } = await upload(file);
    const controller = new AbortController();
    const attempt = transcodeTrack({
      blobs,
      trackId,
      sourceKey,
      maxDurationS: 600,
      tempDir: work,
      onProgress: (progress) => {
        // Past the stage's first report: its ffmpeg processes are running and have reported time.
        if (progress.stage === stage && progress.percent > from) controller.abort(new Error('stopped'));
      },
      signal: controller.signal,
    });
    await expect(attempt).rejects.toThrow();
    expect(controller.signal.aborted).toBe(true);
    expect(await ffmpegChildren()).toEqual([]);
    expect(await listFiles(path.join(blobRoot, 'tracks', String(trackId)))).toEqual([]);
    expect(await listFiles(work)).toEqual([]);
  });
});
