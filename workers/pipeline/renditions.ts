/**
 * Stage 3: one ffmpeg run decodes the source once, applies the second loudnorm pass and
 * feeds the normalised audio to the encoders: Opus 96k (Ogg), and AAC 128k written both as
 * an M4A file and as HLS in ~6 s segments.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { runFfmpeg } from '../ffmpeg.js';
import { type LoudnessMeasurement, normalisationFilter, normalisationType } from './loudness.js';
import { decodeTimeoutMs } from './probe.js';

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
/** Every rendition is 48 kHz: Opus only knows 48 kHz, and loudnorm works at 192 kHz internally. */
const OUTPUT_SAMPLE_RATE = 48_000;

export interface RenderOptions {
  /** The input's audio stream. */
  streamIndex: number;
  channels: number;
  durationS: number;
  /** Null for silence: no gain is applied. */
  loudness: LoudnessMeasurement | null;
  onProgress?: (fraction: number) => void;
  signal?: AbortSignal;
}

export interface RenderResult {
  renditions: RenditionFile[];
  /** How the second loudnorm pass normalised ("none" for silence). */
  normalisation: 'linear' | 'dynamic' | 'none';
}

export async function renderRenditions(
  file: string,
  outDir: string,
  options: RenderOptions,
): Promise<RenderResult> {
  for (const dir of ['opus', 'aac', 'hls']) await mkdir(path.join(outDir, dir), { recursive: true });
  const normalise = options.loudness ? `${normalisationFilter(options.loudness)},` : '';
  const graph = `[0:${options.streamIndex}]${normalise}aresample=${OUTPUT_SAMPLE_RATE},asplit=2[opus][aac]`;
  // Stereo at most: surround uploads are folded down for streaming.
  const channels = options.channels > 2 ? ['-ac', '2'] : [];
  const common = ['-map_metadata', '-1', '-map_chapters', '-1', ...channels];

  // AAC is encoded once and teed into the M4A file and the HLS segments. Paths are relative
  // to outDir (the process's cwd), so tee's option syntax never meets a special character.
  const tee =
    '[f=mp4:movflags=+faststart]aac/128k.m4a|' +
    `[f=hls:hls_time=${HLS_SEGMENT_SECONDS}:hls_playlist_type=vod:hls_flags=independent_segments` +
    ':hls_segment_filename=hls/segment_%03d.ts]hls/index.m3u8';
  const { stderr } = await runFfmpeg({
    input: file,
    cwd: outDir,
    complexFilter: graph,
    outputs: [
      {
        target: 'opus/96k.opus',
        options: ['-map', '[opus]', ...common, '-c:a', 'libopus', '-b:a', '96k', '-vbr', 'on', '-f', 'ogg'],
      },
      {
        target: tee,
        // The MP4 muxer needs the codec config out of band; TS segments get ADTS headers anyway.
        options: [
          '-map',
          '[aac]',
          ...common,
          '-c:a',
          'aac',
          '-b:a',
          '128k',
          '-flags',
          '+global_header',
          '-f',
          'tee',
        ],
      },
    ],
    durationS: options.durationS,
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    timeoutMs: decodeTimeoutMs(options.durationS) * 6,
  });
  return {
    renditions: [...RENDITIONS],
    normalisation: options.loudness ? (normalisationType(stderr) ?? 'dynamic') : 'none',
  };
}
