/**
 * Stage 3: the renditions, from the source and the analysis pass's gain: Opus 96k (Ogg), and
 * AAC 128k written both as an M4A file and as HLS in ~6 s segments (one AAC encode, teed).
 *
 * Two ffmpeg invocations run side by side, one per encoder. ffmpeg 5.1 runs every encoder of
 * an invocation on its one main thread, so in a single invocation libopus and the AAC encoder
 * take turns on one core; apart, they use two, and a job takes the time of its slower encoder
 * (AAC) instead of the sum. The price is a second decode and resample of the source, a few
 * percent of the encoders' CPU.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { FfmpegAbortedError, type FfmpegOutput, runFfmpeg } from '../../common/index.js';
import { decodeTimeoutMs } from './analysis.js';

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
  onProgress?: (fraction: number) => void;
  signal?: AbortSignal;
}

/** One encoder's output options; the paths are relative to outDir (the processes' cwd). */
function encodes(channels: number): FfmpegOutput[] {
  // Stereo at most: surround uploads are folded down for streaming.
  const common = ['-map_metadata', '-1', '-map_chapters', '-1', ...(channels > 2 ? ['-ac', '2'] : [])];
  // AAC is encoded once and teed into the M4A file and the HLS segments. Relative paths keep
  // tee's option syntax from ever meeting a special character.
  const tee =
    '[f=mp4:movflags=+faststart]aac/128k.m4a|' +
    `[f=hls:hls_time=${HLS_SEGMENT_SECONDS}:hls_playlist_type=vod:hls_flags=independent_segments` +
    ':hls_segment_filename=hls/segment_%03d.ts]hls/index.m3u8';
  return [
    {
      target: 'opus/96k.opus',
      options: [...common, '-c:a', 'libopus', '-b:a', '96k', '-vbr', 'on', '-f', 'ogg'],
    },
    {
      target: tee,
      // The MP4 muxer needs the codec config out of band; TS segments get ADTS headers anyway.
      options: [...common, '-c:a', 'aac', '-b:a', '128k', '-flags', '+global_header', '-f', 'tee'],
    },
  ];
}

/** The filter chain every rendition shares: the gain, then the output rate. */
export function renditionFilter(gainDb: number): string {
  // No volume filter at all for 0 dB (silence): it would only cost a pass over the samples.
  const gain = gainDb === 0 ? '' : `volume=${gainDb}dB,`;
  return `${gain}aresample=${OUTPUT_SAMPLE_RATE}`;
}

export async function renderRenditions(
  file: string,
  outDir: string,
  options: RenderOptions,
): Promise<RenditionFile[]> {
  for (const dir of ['opus', 'aac', 'hls']) await mkdir(path.join(outDir, dir), { recursive: true });
  const filter = renditionFilter(options.gainDb);
  // One failing encoder stops the other: its outputs are useless without the rest.
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) stop.abort();
  const fractions: number[] = [];
  const runs = encodes(options.channels).map((output, index) => {
    fractions[index] = 0;
    const onProgress = options.onProgress;
    return runFfmpeg({
      input: file,
      cwd: outDir,
      outputs: [
        {
          target: output.target,
          options: ['-map', `0:${options.streamIndex}`, '-af', filter, ...output.options],
        },
      ],
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
