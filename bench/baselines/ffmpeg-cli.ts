/**
 * The transcode baseline: the plain ffmpeg command lines doing the pipeline's work on the same
 * file, step for step: ffprobe; one analysis decode (ebur128 loudness and true peak, and the
 * low-rate PCM the waveform is drawn from); then the renditions with the resulting linear gain
 * from one decode: one ffmpeg decodes, encodes Opus 96k and hands the samples through a named
 * pipe to another encoding AAC 128k teed to M4A and HLS, side by side. No queue, no storage, no
 * validation, no progress parsing: what ffmpeg alone costs.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type CliStage = 'probe' | 'loudness' | 'renditions';

const TARGET_LUFS = -14;
const CEILING_DBTP = -1;

function summaryValue(stderr: string, label: RegExp): number {
  const match = label.exec(stderr.slice(stderr.lastIndexOf('Summary:')));
  if (!match?.[1]) throw new Error(`ebur128 printed no ${label.source}`);
  return Number(match[1]);
}

export async function ffmpegCliJob(
  source: string,
): Promise<{ wallMs: number; stagesMs: Record<CliStage, number> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'veza-bench-ffmpeg-'));
  const stagesMs: Record<CliStage, number> = { probe: 0, loudness: 0, renditions: 0 };
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
      run('ffprobe', ['-v', 'warning', '-print_format', 'json', '-show_format', '-show_streams', source]),
    );
    const { stderr } = await timed('loudness', () =>
      run(
        'ffmpeg',
        [
          '-nostdin',
          '-hide_banner',
          '-nostats',
          '-i',
          source,
          '-map',
          '0:a:0',
          '-af',
          'ebur128=peak=true:framelog=verbose',
          '-ac',
          '1',
          '-ar',
          '8000',
          '-f',
          's16le',
          '-y',
          path.join(dir, 'pcm'),
        ],
        { maxBuffer: 16 * 1024 * 1024 },
      ),
    );
    const integrated = summaryValue(stderr, /I:\s+(-?[\d.]+) LUFS/);
    const peak = summaryValue(stderr, /Peak:\s+(-?[\d.]+) dBFS/);
    const gainDb = Math.min(TARGET_LUFS - integrated, CEILING_DBTP - peak);
    const filter = `[0:a:0]volume=${gainDb.toFixed(2)}dB,aresample=48000,aformat=sample_fmts=flt:channel_layouts=stereo,asplit=2[opus][aac]`;
    for (const sub of ['opus', 'aac', 'hls']) await mkdir(path.join(dir, sub), { recursive: true });
    await timed('renditions', async () => {
      await run('mkfifo', ['render.pcm'], { cwd: dir });
      await Promise.all([
        run(
          'ffmpeg',
          [
            '-nostdin',
            '-v',
            'error',
            '-i',
            source,
            '-filter_complex',
            filter,
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
            '-c:a',
            'pcm_f32le',
            '-f',
            'f32le',
            '-y',
            'render.pcm',
          ],
          { cwd: dir },
        ),
        run(
          'ffmpeg',
          [
            '-nostdin',
            '-v',
            'error',
            '-f',
            'f32le',
            '-ar',
            '48000',
            '-ac',
            '2',
            '-i',
            'render.pcm',
            '-map',
            '0:a',
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
      ]);
    });
    return { wallMs: performance.now() - started, stagesMs };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
