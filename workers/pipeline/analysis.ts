/**
 * Stage 2 ('loudness'): the one full decode before rendering. From the same decoded samples it
 * measures the loudness (ebur128), writes the low-rate mono PCM the waveform is drawn from, and
 * proves the file decodes to the end (probe.ts judges that). Everything that does not depend
 * on the normalising gain comes from this pass; everything that does comes from the render.
 * The true peak (loudness.ts says why it is not part of this pass) is measured by a second
 * decode on the other core at the same time; it is stopped as soon as the analysis shows the
 * gain cannot bring the peaks near the ceiling, so most jobs never wait for it and the rest
 * wait only for its remainder.
 */
import { stat } from 'node:fs/promises';
import { errorLines, FfmpegError, runFfmpeg } from '../../common/index.js';
import {
  LOUDNESS_FILTER,
  type LoudnessMeasurement,
  needsTruePeak,
  parseLoudness,
  parseTruePeak,
  TRUE_PEAK_FILTER,
} from './loudness.js';
import { checkDecode, hidePath, type ProbedAudio } from './probe.js';
import { AudioRejectedError } from './rejection.js';

export interface Analysis {
  /** Seconds of audio decoded: the track's true duration. */
  durationS: number;
  /** Null when the source is silence. */
  loudness: LoudnessMeasurement | null;
  /** The decoded audio as mono signed 16-bit little-endian PCM at `pcmSampleRate`. */
  pcmPath: string;
  pcmSampleRate: number;
}

export interface AnalyseOptions {
  maxDurationS: number;
  /** Where the PCM is written. */
  pcmPath: string;
  onProgress?: (fraction: number) => void;
  signal?: AbortSignal;
}

/** Enough samples per waveform bucket for short files, a bounded PCM file for long ones. */
export function pcmRateFor(durationS: number): number {
  if (durationS <= 600) return 8_000;
  if (durationS <= 3_600) return 2_000;
  return 1_000;
}

/** Generous: this pass runs at hundreds of times realtime; only a hung process hits this. */
export function decodeTimeoutMs(durationS: number): number {
  return 60_000 + Math.ceil(durationS) * 1_000;
}

export async function analyseAudio(
  file: string,
  probed: ProbedAudio,
  options: AnalyseOptions,
): Promise<Analysis> {
  const limit = options.maxDurationS;
  const expectedS = probed.declaredS ?? limit;
  const truePeakStop = new AbortController();
  const truePeak = measureTruePeak(file, probed, expectedS, {
    maxDurationS: limit,
    signal: options.signal ? AbortSignal.any([options.signal, truePeakStop.signal]) : truePeakStop.signal,
  });
  // Handled from the start: when it is not needed, its failure (or its stop) is nobody's business.
  truePeak.catch(() => undefined);
  try {
    const analysis = await decodeAndMeasure(file, probed, options);
    const loudness = analysis.loudness;
    if (loudness && needsTruePeak(loudness)) {
      return { ...analysis, loudness: { ...loudness, inputTp: await truePeak } };
    }
    return analysis;
  } finally {
    truePeakStop.abort();
    // It has exited before this returns: no process outlives the stage.
    await truePeak.catch(() => undefined);
  }
}

/** The analysis pass proper: loudness, sample peak, waveform PCM, decode check. */
async function decodeAndMeasure(
  file: string,
  probed: ProbedAudio,
  options: AnalyseOptions,
): Promise<Analysis> {
  const limit = options.maxDurationS;
  const expectedS = probed.declaredS ?? limit;
  const pcmSampleRate = pcmRateFor(expectedS);
  let stderr: string;
  try {
    ({ stderr } = await runFfmpeg({
      input: file,
      outputs: [
        {
          target: options.pcmPath,
          // Decoding stops just past the limit, so a file lying about its length cannot keep us busy.
          options: [
            '-map',
            `0:${probed.audioStreamIndex}`,
            '-t',
            String(limit + 1),
            '-af',
            LOUDNESS_FILTER,
            '-ac',
            '1',
            '-ar',
            String(pcmSampleRate),
            '-f',
            's16le',
          ],
        },
      ],
      durationS: expectedS,
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      timeoutMs: decodeTimeoutMs(expectedS) * 2,
    }));
  } catch (error) {
    if (error instanceof FfmpegError) {
      throw new AudioRejectedError(`the audio could not be decoded: ${hidePath(error.message, file)}`);
    }
    throw error;
  }

  const durationS = (await stat(options.pcmPath)).size / 2 / pcmSampleRate;
  const errors = errorLines(stderr).map((line) => hidePath(line, file));
  checkDecode(probed, { decodedS: durationS, errors }, limit);
  return { durationS, loudness: parseLoudness(stderr), pcmPath: options.pcmPath, pcmSampleRate };
}

/** The true-peak pass: the decode again, through ebur128's 4x oversampling, nothing written. */
async function measureTruePeak(
  file: string,
  probed: ProbedAudio,
  durationS: number,
  options: { maxDurationS: number; signal: AbortSignal },
): Promise<number> {
  try {
    const { stderr } = await runFfmpeg({
      input: file,
      outputs: [
        {
          target: '-',
          options: [
            '-map',
            `0:${probed.audioStreamIndex}`,
            '-t',
            String(options.maxDurationS + 1),
            '-af',
            TRUE_PEAK_FILTER,
            '-f',
            'null',
          ],
        },
      ],
      signal: options.signal,
      timeoutMs: decodeTimeoutMs(durationS) * 2,
    });
    return parseTruePeak(stderr);
  } catch (error) {
    if (error instanceof FfmpegError) {
      throw new AudioRejectedError(`the audio could not be decoded: ${hidePath(error.message, file)}`);
    }
    throw error;
  }
}
