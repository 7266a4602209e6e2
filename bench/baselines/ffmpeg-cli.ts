/**
 * The transcode baseline: the plain ffmpeg command lines doing the pipeline's work on the same
 * file, step for step: ffprobe; one analysis decode (ebur128 loudness and true peak, and the
 * low-rate PCM the waveform is drawn from); then the renditions with the resulting linear gain,
 * Opus 96k in one ffmpeg and AAC 128k teed to M4A and HLS in another, side by side. No queue,
 * no storage, no validation, no progress parsing: what ffmpeg alone costs.
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
    const filter = `volume=${gainDb.toFixed(2)}dB,aresample=48000`;
    for (const sub of ['opus', 'aac', 'hls']) await mkdir(path.join(dir, sub), { recursive: true });
    const render = (output: string[]) =>
      run('ffmpeg', ['-nostdin', '-v', 'error', '-i', source, '-map', '0:a:0', '-af', filter, ...output], {
        cwd: dir,
      });
    await timed('renditions', () =>
      Promise.all([
        render([
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
        ]),
        render([
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
        ]),
      ]),
    );
    return { wallMs: performance.now() - started, stagesMs };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
