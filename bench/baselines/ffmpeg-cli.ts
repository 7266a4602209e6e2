/**
 * The transcode baseline: the plain ffmpeg command lines doing the pipeline's work on the same
 * file, step for step: ffprobe; one analysis decode (ebur128 loudness and sample peak, and the
 * low-rate PCM the waveform is drawn from), and a true-peak decode when the pipeline's rule
 * (needsTruePeak) asks for one; then the renditions with the resulting linear gain
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

import {
  LOUDNESS_FILTER,
  needsTruePeak,
  parseLoudness,
  parseTruePeak,
  planNormalisation,
  TRUE_PEAK_FILTER,
} from '../../workers/pipeline/loudness.js';

const run = promisify(execFile);

export type CliStage = 'probe' | 'loudness' | 'renditions';

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
    // The gain rule is the pipeline's (loudness.ts): the same measurements, the same gain.
    let loudness = await timed('loudness', async () => {
      const { stderr } = await run(
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
          LOUDNESS_FILTER,
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
      );
      return parseLoudness(stderr);
    });
    if (loudness && needsTruePeak(loudness)) {
      const measuredLoudness = loudness;
      loudness = await timed('loudness', async () => {
        const { stderr } = await run(
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
            TRUE_PEAK_FILTER,
            '-f',
            'null',
            '-',
          ],
          { maxBuffer: 16 * 1024 * 1024 },
        );
        return { ...measuredLoudness, inputTp: parseTruePeak(stderr) };
      });
    }
    const { gainDb } = planNormalisation(loudness);
    const filter = `[0:a:0]volume=${gainDb}dB,aresample=48000,aformat=sample_fmts=flt:channel_layouts=stereo,asplit=2[opus][aac]`;
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
