/**
 * The pipeline over one local file: probe, measure, render, waveform, cover. Everything it
 * makes lands in `<workDir>/out`, which the caller publishes only when this resolves.
 */
import { mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../../common/index.js';
import { FfmpegAbortedError } from '../ffmpeg.js';
import { type CoverFile, extractCover } from './cover.js';
import { type LoudnessMeasurement, measureLoudness } from './loudness.js';
import { type AudioMetadata, probeAudio } from './probe.js';
import { HLS_SEGMENT_CONTENT_TYPE, type RenditionFile, renderRenditions } from './renditions.js';
import { DEFAULT_WAVEFORM_POINTS, writeWaveform } from './waveform.js';

export type Stage = 'probe' | 'loudness' | 'renditions' | 'waveform' | 'cover' | 'publish';

/** Share of the whole job per stage, in percent, roughly proportional to the time each takes. */
const STAGE_SPAN: Record<Stage, [number, number]> = {
  probe: [0, 8],
  loudness: [8, 35],
  renditions: [35, 94],
  waveform: [94, 96],
  cover: [96, 97],
  publish: [97, 100],
};

export interface Progress {
  /** 0..100, never decreasing. */
  percent: number;
  stage: Stage;
}

export interface OutputFile {
  /** Relative to the output directory, with forward slashes. */
  path: string;
  contentType: string;
}

export interface ProcessOptions {
  maxDurationS: number;
  waveformPoints?: number;
  onProgress?: (progress: Progress) => void;
  signal?: AbortSignal;
  log?: Logger;
}

export interface ProcessedAudio {
  /** Where the outputs are: `<workDir>/out`. */
  outDir: string;
  metadata: AudioMetadata;
  /** The source's loudness; null when it is silence. */
  loudness: LoudnessMeasurement | null;
  normalisation: 'linear' | 'dynamic' | 'none';
  renditions: RenditionFile[];
  waveform: OutputFile & { points: number };
  cover: CoverFile | null;
  /** Every output, the HLS playlist last, so a reader never sees it name a missing segment. */
  files: OutputFile[];
  timingsMs: Partial<Record<Stage, number>>;
}

/** Reports whole percents, only when they change, and never backwards. */
export class ProgressReporter {
  private last = -1;

  constructor(private readonly onProgress?: (progress: Progress) => void) {}

  stage(stage: Stage): (fraction: number) => void {
    const [from, to] = STAGE_SPAN[stage];
    this.report(stage, from);
    return (fraction) => this.report(stage, from + (to - from) * fraction);
  }

  done(stage: Stage): void {
    this.report(stage, STAGE_SPAN[stage][1]);
  }

  private report(stage: Stage, percent: number): void {
    const whole = Math.floor(Math.min(100, Math.max(0, percent)));
    if (whole <= this.last) return;
    this.last = whole;
    this.onProgress?.({ percent: whole, stage });
  }
}

export async function processAudio(
  sourcePath: string,
  workDir: string,
  options: ProcessOptions,
  progress = new ProgressReporter(options.onProgress),
): Promise<ProcessedAudio> {
  const outDir = path.join(workDir, 'out');
  const scratch = path.join(workDir, 'scratch');
  await mkdir(outDir, { recursive: true });
  await mkdir(scratch, { recursive: true });
  const signal = options.signal;
  const timingsMs: Partial<Record<Stage, number>> = {};
  const timed = async <T>(stage: Stage, work: (onProgress: (fraction: number) => void) => Promise<T>) => {
    signal?.throwIfAborted();
    const started = performance.now();
    const result = await work(progress.stage(stage));
    progress.done(stage);
    timingsMs[stage] = Math.round(performance.now() - started);
    return result;
  };
  const withSignal = signal ? { signal } : {};

  const probed = await timed('probe', (onProgress) =>
    probeAudio(sourcePath, {
      maxDurationS: options.maxDurationS,
      pcmPath: path.join(scratch, 'waveform.pcm'),
      onProgress,
      ...withSignal,
    }),
  );
  const { metadata } = probed;
  const streamIndex = probed.audioStreamIndex;

  const loudness = await timed('loudness', (onProgress) =>
    measureLoudness(sourcePath, streamIndex, { durationS: metadata.durationS, onProgress, ...withSignal }),
  );

  const rendered = await timed('renditions', (onProgress) =>
    renderRenditions(sourcePath, outDir, {
      streamIndex,
      channels: metadata.channels,
      durationS: metadata.durationS,
      loudness,
      onProgress,
      ...withSignal,
    }),
  );

  const points = options.waveformPoints ?? DEFAULT_WAVEFORM_POINTS;
  await timed('waveform', () =>
    writeWaveform(probed.pcmPath, path.join(outDir, 'waveform.json'), points, metadata.durationS),
  );

  let cover: CoverFile | null = null;
  const coverStream = probed.coverStream;
  if (coverStream) {
    cover = await timed('cover', async () => {
      try {
        return await extractCover(sourcePath, coverStream, outDir, signal);
      } catch (error) {
        if (error instanceof FfmpegAbortedError) throw error;
        // A damaged picture is no reason to refuse the audio.
        options.log?.warn({ err: error }, 'cover art could not be extracted; going on without it');
        return null;
      }
    });
  }

  return {
    outDir,
    metadata,
    loudness,
    normalisation: rendered.normalisation,
    renditions: rendered.renditions,
    waveform: { path: 'waveform.json', contentType: 'application/json', points },
    cover,
    files: await listOutputs(outDir),
    timingsMs,
  };
}

const CONTENT_TYPES: Record<string, string> = {
  '.opus': 'audio/ogg; codecs=opus',
  '.m4a': 'audio/mp4',
  '.m3u8': 'application/vnd.apple.mpegurl',
  '.ts': HLS_SEGMENT_CONTENT_TYPE,
  '.json': 'application/json',
  '.jpg': 'image/jpeg',
  '.png': 'image/png',
};

async function listOutputs(outDir: string): Promise<OutputFile[]> {
  const entries = await readdir(outDir, { recursive: true, withFileTypes: true });
  const files: OutputFile[] = [];
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const relative = path.relative(outDir, path.join(entry.parentPath, entry.name)).split(path.sep).join('/');
    const contentType = CONTENT_TYPES[path.extname(entry.name)];
    if (!contentType) throw new Error(`the pipeline made an unexpected file: ${relative}`);
    files.push({ path: relative, contentType });
  }
  const playlistsLast = (file: OutputFile) => (file.path.endsWith('.m3u8') ? 1 : 0);
  return files.sort((a, b) => playlistsLast(a) - playlistsLast(b) || a.path.localeCompare(b.path));
}
