/**
 * The transcode baseline: the plain ffmpeg command lines doing the pipeline's work on the same
 * file, step for step: ffprobe; one analysis decode (ebur128 loudness and sample peak, and the
 * low-rate PCM the waveform is drawn from), with a true-peak decode beside it that is waited
 * for when the pipeline's rule (needsTruePeak) asks for the true peak and stopped otherwise; then the renditions with the resulting linear gain, Opus 96k in
 * one ffmpeg and AAC 128k teed to M4A and HLS in another, side by side. No queue, no storage,
 * no validation, no progress parsing: what ffmpeg alone costs.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';

import {
  LOUDNESS_FILTER,
  type LoudnessMeasurement,
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
    const loudness = await timed('loudness', async (): Promise<LoudnessMeasurement | null> => {
      const truePeakStop = new AbortController();
      const truePeak = run(
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
        { maxBuffer: 16 * 1024 * 1024, signal: truePeakStop.signal },
      ).then(({ stderr }) => parseTruePeak(stderr));
      truePeak.catch(() => undefined);
      try {
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
        const measured = parseLoudness(stderr);
        return measured && needsTruePeak(measured) ? { ...measured, inputTp: await truePeak } : measured;
      } finally {
        truePeakStop.abort();
        await truePeak.catch(() => undefined);
      }
    });
    const { gainDb } = planNormalisation(loudness);
    const filter = `volume=${gainDb}dB,aresample=48000`;
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
