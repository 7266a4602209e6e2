/**
 * The transcode baseline: the plain ffmpeg command line doing the pipeline's work on the same
 * file: probe, decode to PCM (what the waveform is drawn from), a loudnorm measuring pass, and
 * one render with the second loudnorm pass to Opus 96k, AAC 128k M4A and AAC HLS. No queue,
 * no storage, no validation: what ffmpeg alone costs.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type CliStage = 'probe' | 'decode' | 'loudness' | 'renditions';

const TARGET = 'I=-14:TP=-1:LRA=11';

interface Loudnorm {
  input_i: string;
  input_tp: string;
  input_lra: string;
  input_thresh: string;
  target_offset: string;
}

export async function ffmpegCliJob(
  source: string,
): Promise<{ wallMs: number; stagesMs: Record<CliStage, number> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'veza-bench-ffmpeg-'));
  const stagesMs: Record<CliStage, number> = { probe: 0, decode: 0, loudness: 0, renditions: 0 };
  const started = performance.now();
  const timed = async <T>(stage: CliStage, work: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    try {
      return await work();
    } finally {
      stagesMs[stage] += performance.now() - t;
    }
  };
  try {
    await timed('probe', () =>
      run('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams', source]),
    );
    await timed('decode', () =>
      run('ffmpeg', [
        '-nostdin',
        '-v',
        'error',
        '-i',
        source,
        '-map',
        '0:a:0',
        '-ac',
        '1',
        '-ar',
        '8000',
        '-f',
        's16le',
        '-y',
        path.join(dir, 'pcm'),
      ]),
    );
    const { stderr } = await timed('loudness', () =>
      run(
        'ffmpeg',
        [
          '-nostdin',
          '-hide_banner',
          '-i',
          source,
          '-map',
          '0:a:0',
          '-af',
          `loudnorm=${TARGET}:print_format=json`,
          '-f',
          'null',
          '-',
        ],
        {
          maxBuffer: 16 * 1024 * 1024,
        },
      ),
    );
    const json = stderr.slice(stderr.lastIndexOf('{'), stderr.lastIndexOf('}') + 1);
    const m = JSON.parse(json) as Loudnorm;
    const normalise =
      `loudnorm=${TARGET}:measured_I=${m.input_i}:measured_TP=${m.input_tp}:measured_LRA=${Math.max(Number(m.input_lra), 0.01)}` +
      `:measured_thresh=${m.input_thresh}:offset=${m.target_offset}:linear=true`;
    for (const sub of ['opus', 'aac', 'hls']) await mkdir(path.join(dir, sub), { recursive: true });
    await timed('renditions', () =>
      run(
        'ffmpeg',
        [
          '-nostdin',
          '-v',
          'error',
          '-i',
          source,
          '-filter_complex',
          `[0:a:0]${normalise},aresample=48000,asplit=2[opus][aac]`,
          '-map',
          '[opus]',
          '-map_metadata',
          '-1',
          '-c:a',
          'libopus',
          '-b:a',
          '96k',
          '-vbr',
          'on',
          '-f',
          'ogg',
          'opus/96k.opus',
          '-map',
          '[aac]',
          '-map_metadata',
          '-1',
          '-c:a',
          'aac',
          '-b:a',
          '128k',
          '-flags',
          '+global_header',
          '-f',
          'tee',
          '[f=mp4:movflags=+faststart]aac/128k.m4a|[f=hls:hls_time=6:hls_playlist_type=vod:hls_flags=independent_segments:hls_segment_filename=hls/segment_%03d.ts]hls/index.m3u8',
        ],
        { cwd: dir },
      ),
    );
    return { wallMs: performance.now() - started, stagesMs };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
