/**
 * Stage 3: the renditions, from the source and the analysis pass's gain: Opus 96k (Ogg), and
 * AAC 128k written both as an M4A file and as HLS in ~6 s segments (one AAC encode, teed).
 *
 * One decode feeds every rendition, and two ffmpeg processes encode side by side, one per
 * encoder: ffmpeg 5.1 runs every encoder of an invocation on its one main thread, so in a
 * single invocation libopus and the AAC encoder would take turns on one core. The first
 * process decodes the source, applies the gain and the output rate once, encodes the Opus
 * rendition and hands the same samples to the AAC process through a named pipe (raw float
 * PCM, no container). The AAC encoder, the slowest step of a job, so spends nothing on
 * decoding or resampling, and a job decodes the source twice in all (analysis, render).
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { FfmpegAbortedError, type FfmpegRun, runFfmpeg } from '../../common/index.js';
import { decodeTimeoutMs } from './analysis.js';

const run = promisify(execFile);

export type RenditionFormat = 'opus' | 'aac' | 'hls';

export interface RenditionFile {
  format: RenditionFormat;
  codec: 'opus' | 'aac';
  /** Target bits per second. */
  bitrate: number;
  /** Relative to the output directory; for HLS, the playlist. */
  path: string;
  contentType: string;
}

export const RENDITIONS: readonly RenditionFile[] = [
  {
    format: 'opus',
    codec: 'opus',
    bitrate: 96_000,
    path: 'opus/96k.opus',
    contentType: 'audio/ogg; codecs=opus',
  },
  { format: 'aac', codec: 'aac', bitrate: 128_000, path: 'aac/128k.m4a', contentType: 'audio/mp4' },
  {
    format: 'hls',
    codec: 'aac',
    bitrate: 128_000,
    path: 'hls/index.m3u8',
    contentType: 'application/vnd.apple.mpegurl',
  },
];

export const HLS_SEGMENT_SECONDS = 6;
export const HLS_SEGMENT_CONTENT_TYPE = 'video/mp2t';
/** Every rendition is 48 kHz: Opus only knows 48 kHz, and one rate for all keeps them alike. */
const OUTPUT_SAMPLE_RATE = 48_000;

export interface RenderOptions {
  /** The input's audio stream. */
  streamIndex: number;
  channels: number;
  durationS: number;
  /** The normalising gain (loudness.ts), dB. */
  gainDb: number;
  /** A private directory for the pipe between the two processes. */
  scratchDir: string;
  onProgress?: (fraction: number) => void;
  signal?: AbortSignal;
}

/** What every rendition drops from the source: tags and chapters. */
const NO_METADATA = ['-map_metadata', '-1', '-map_chapters', '-1'];

/** Output options of the Opus rendition (the decoding process's own encode). */
export const OPUS_OPTIONS = ['-c:a', 'libopus', '-b:a', '96k', '-vbr', 'on', '-f', 'ogg'];

/**
 * AAC is encoded once and teed into the M4A file and the HLS segments. Relative paths (the
 * process runs in the output directory) keep tee's option syntax from ever meeting a special
 * character.
 */
export const AAC_TEE =
  '[f=mp4:movflags=+faststart]aac/128k.m4a|' +
  `[f=hls:hls_time=${HLS_SEGMENT_SECONDS}:hls_playlist_type=vod:hls_flags=independent_segments` +
  ':hls_segment_filename=hls/segment_%03d.ts]hls/index.m3u8';

/** The MP4 muxer needs the codec config out of band; TS segments get ADTS headers anyway. */
export const AAC_OPTIONS = ['-c:a', 'aac', '-b:a', '128k', '-flags', '+global_header', '-f', 'tee'];

/** The samples between the two processes: what the AAC encoder would have got from the filter. */
const PIPE_FORMAT = ['-f', 'f32le', '-ar', String(OUTPUT_SAMPLE_RATE)];

/** Stereo at most: surround uploads are folded down for streaming. */
export function outputChannels(channels: number): 1 | 2 {
  return channels === 1 ? 1 : 2;
}

/**
 * The filter chain every rendition shares: the gain, the output rate and layout, then a split
 * into the Opus encoder (`[opus]`) and the pipe to the AAC encoder (`[aac]`).
 */
export function renditionFilter(streamIndex: number, gainDb: number, channels: number): string {
  // No volume filter at all for 0 dB (silence): it would only cost a pass over the samples.
  const gain = gainDb === 0 ? '' : `volume=${gainDb}dB,`;
  const layout = outputChannels(channels) === 1 ? 'mono' : 'stereo';
  return (
    `[0:${streamIndex}]${gain}aresample=${OUTPUT_SAMPLE_RATE},` +
    `aformat=sample_fmts=flt:channel_layouts=${layout},asplit=2[opus][aac]`
  );
}

/** The two processes' runs: the decoder with the Opus encode, and the AAC encode from the pipe. */
export function renditionRuns(
  file: string,
  pipePath: string,
  options: Pick<RenderOptions, 'streamIndex' | 'channels' | 'gainDb'>,
): [Omit<FfmpegRun, 'cwd'>, Omit<FfmpegRun, 'cwd'>] {
  return [
    {
      input: file,
      complexFilter: renditionFilter(options.streamIndex, options.gainDb, options.channels),
      outputs: [
        { target: 'opus/96k.opus', options: ['-map', '[opus]', ...NO_METADATA, ...OPUS_OPTIONS] },
        { target: pipePath, options: ['-map', '[aac]', '-c:a', 'pcm_f32le', ...PIPE_FORMAT] },
      ],
    },
    {
      input: pipePath,
      inputOptions: [...PIPE_FORMAT, '-ac', String(outputChannels(options.channels))],
      outputs: [{ target: AAC_TEE, options: ['-map', '0:a', ...NO_METADATA, ...AAC_OPTIONS] }],
    },
  ];
}

export async function renderRenditions(
  file: string,
  outDir: string,
  options: RenderOptions,
): Promise<RenditionFile[]> {
  for (const dir of ['opus', 'aac', 'hls']) await mkdir(path.join(outDir, dir), { recursive: true });
  const pipePath = path.join(options.scratchDir, 'render.pcm');
  await run('mkfifo', ['-m', '600', pipePath], options.signal ? { signal: options.signal } : {});
  // One failing process stops the other: its outputs are useless without the rest, and the
  // other end of the pipe would otherwise wait for it forever.
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) stop.abort();
  const fractions: number[] = [];
  const runs = renditionRuns(file, pipePath, options).map((spec, index) => {
    fractions[index] = 0;
    const onProgress = options.onProgress;
    return runFfmpeg({
      ...spec,
      cwd: outDir,
      durationS: options.durationS,
      ...(onProgress
        ? {
            // The slower encoder decides when the stage ends.
            onProgress: (fraction: number) => {
              fractions[index] = fraction;
              onProgress(Math.min(...fractions));
            },
          }
        : {}),
      signal: stop.signal,
      timeoutMs: decodeTimeoutMs(options.durationS) * 6,
    }).catch((error: unknown) => {
      stop.abort();
      throw error;
    });
  });
  try {
    // Every process has exited before this returns, so none writes into a directory being removed.
    const results = await Promise.allSettled(runs);
    const failures = results.flatMap((result) => (result.status === 'rejected' ? [result.reason] : []));
    if (options.signal?.aborted) throw new FfmpegAbortedError('ffmpeg was stopped');
    // The encoder that failed, not the one we stopped because of it.
    const cause = failures.find((reason) => !(reason instanceof FfmpegAbortedError)) ?? failures[0];
    if (cause !== undefined) throw cause;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
  return [...RENDITIONS];
}
