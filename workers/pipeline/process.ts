/**
 * The pipeline over one local file. Everything it makes lands in `<workDir>/out`, which the
 * caller publishes only when this resolves.
 *
 * The source is decoded twice, the least a two-pass normalisation allows: once by the
 * analysis (validation, loudness, waveform PCM), once by the render (every rendition, with the
 * gain the analysis found). Work that waits on neither runs beside them: the cover comes out
 * while the analysis decodes, the waveform is computed while the encoders run.
 */
import { mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../../common/index.js';
import { FfmpegAbortedError } from '../../common/index.js';
import { analyseAudio } from './analysis.js';
import { type CoverFile, extractCover } from './cover.js';
import { type LoudnessMeasurement, type NormalisationMode, planNormalisation } from './loudness.js';
import { type AudioMetadata, probeAudio } from './probe.js';
import { HLS_SEGMENT_CONTENT_TYPE, type RenditionFile, renderRenditions } from './renditions.js';
import { DEFAULT_WAVEFORM_POINTS, writeWaveform } from './waveform.js';

export type Stage = 'probe' | 'loudness' | 'renditions' | 'waveform' | 'cover' | 'publish';

/**
 * Share of the whole job per stage, in percent, roughly proportional to the time each takes
 * (a 60 s MP3 on one idle core each: probe 0.1 s, loudness 0.4 s, renditions 0.9 s). 'loudness'
 * is the analysis decode, which also proves the file decodes; the waveform and the cover are
 * made beside the long stages, so their spans only mark them done.
 */
const STAGE_SPAN: Record<Stage, [number, number]> = {
  probe: [0, 5],
  loudness: [5, 30],
  renditions: [30, 95],
  waveform: [95, 96],
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
  /** How the renditions were levelled (loudness.ts). */
  normalisation: NormalisationMode;
  /** The gain the renditions got, dB. */
  gainDb: number;
  renditions: RenditionFile[];
  waveform: OutputFile & { points: number };
  cover: CoverFile | null;
  /** Every output, the HLS playlist last, so a reader never sees it name a missing segment. */
  files: OutputFile[];
  /**
   * Wall time per stage. The waveform's and the cover's overlap the long stages they run
   * beside, so the stages can add up to more than the job took.
   */
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
  const side: Promise<unknown>[] = [];
  const timed = async <T>(stage: Stage, work: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await work();
    } finally {
      timingsMs[stage] = Math.round(performance.now() - started);
    }
  };
  /** A stage on the critical path: its span moves with ffmpeg's progress. */
  const step = async <T>(stage: Stage, work: (onProgress: (fraction: number) => void) => Promise<T>) => {
    signal?.throwIfAborted();
    const onProgress = progress.stage(stage);
    const result = await timed(stage, () => work(onProgress));
    progress.done(stage);
    return result;
  };
  /** Side work, timed while it runs; its stage is reported done when the main line reaches it. */
  const beside = <T>(stage: Stage, work: () => Promise<T>): Promise<T> => {
    const task = timed(stage, work);
    // Handled from the start: a failure waits to be awaited, it must not crash the process first.
    task.catch(() => undefined);
    side.push(task);
    return task;
  };
  const reached = async <T>(stage: Stage, task: Promise<T>): Promise<T> => {
    progress.stage(stage);
    const result = await task;
    progress.done(stage);
    return result;
  };
  const withSignal = signal ? { signal } : {};
  // Stops the side work when the main line fails, so nothing writes into a directory the
  // caller is about to remove.
  const sideStop = new AbortController();
  const sideSignal = signal ? AbortSignal.any([signal, sideStop.signal]) : sideStop.signal;

  try {
    // The probe and the analysis decode run side by side (the decode needs nothing from the
    // probe before its end); a probe that refuses the file stops the decode and is the answer.
    progress.stage('probe');
    const probing = timed('probe', () =>
      probeAudio(sourcePath, { maxDurationS: options.maxDurationS, ...withSignal }),
    );
    probing.catch(() => undefined);
    const analysis = await step('loudness', (onProgress) =>
      analyseAudio(sourcePath, probing, {
        maxDurationS: options.maxDurationS,
        pcmPath: path.join(scratch, 'waveform.pcm'),
        onProgress,
        ...withSignal,
      }),
    );
    const probed = await probing;

    const coverStream = probed.coverStream;
    const coverTask: Promise<CoverFile | null> = coverStream
      ? beside('cover', async () => {
          try {
            return await extractCover(sourcePath, coverStream, outDir, sideSignal);
          } catch (error) {
            if (error instanceof FfmpegAbortedError) throw error;
            // A damaged picture is no reason to refuse the audio.
            options.log?.warn({ err: error }, 'cover art could not be extracted; going on without it');
            return null;
          }
        })
      : Promise.resolve(null);

    const { mode, gainDb } = planNormalisation(analysis.loudness);

    const points = options.waveformPoints ?? DEFAULT_WAVEFORM_POINTS;
    const waveformTask = beside('waveform', () =>
      writeWaveform(analysis.pcmPath, path.join(outDir, 'waveform.json'), points, analysis.durationS),
    );

    const renditions = await step('renditions', (onProgress) =>
      renderRenditions(sourcePath, outDir, {
        streamIndex: probed.audioStreamIndex,
        channels: probed.channels,
        durationS: analysis.durationS,
        gainDb,
        onProgress,
        ...withSignal,
      }),
    );
    await reached('waveform', waveformTask);
    const cover = coverStream ? await reached('cover', coverTask) : null;

    return {
      outDir,
      metadata: {
        formatName: probed.formatName,
        codec: probed.codec,
        bitrate: probed.bitrate,
        sampleRate: probed.sampleRate,
        channels: probed.channels,
        durationS: analysis.durationS,
      },
      loudness: analysis.loudness,
      normalisation: mode,
      gainDb,
      renditions,
      waveform: { path: 'waveform.json', contentType: 'application/json', points },
      cover,
      files: await listOutputs(outDir),
      timingsMs,
    };
  } finally {
    sideStop.abort();
    await Promise.allSettled(side);
  }
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
