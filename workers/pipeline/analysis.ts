/**
 * Stage 2 ('loudness'): the one full decode before rendering. From the same decoded samples it
 * measures the loudness (ebur128), writes the low-rate mono PCM the waveform is drawn from, and
 * proves the file decodes to the end (probe.ts judges that). Everything that does not depend
 * on the normalising gain comes from this pass; everything that does comes from the render.
 */
import { stat } from 'node:fs/promises';
import { errorLines, FfmpegError, runFfmpeg } from '../../common/index.js';
import { LOUDNESS_FILTER, type LoudnessMeasurement, parseLoudness } from './loudness.js';
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

/**
 * The decode starts before the probe answers, so its PCM rate and time budget come from the
 * file's size: read as 64 kb/s (a floor for music), it overstates the duration of nearly every
 * upload, which only lowers the waveform's PCM rate for long ones.
 */
export function durationFromSize(bytes: number, maxDurationS: number): number {
  return Math.min(maxDurationS, Math.max(1, bytes / 8_000));
}

/** Generous: this pass runs at hundreds of times realtime; only a hung process hits this. */
export function decodeTimeoutMs(durationS: number): number {
  return 60_000 + Math.ceil(durationS) * 1_000;
}

/**
 * Runs beside the probe (`probing`): the decode reads the first audio stream, the one the probe
 * picks, and is stopped if the probe refuses the file, whose answer then wins. A probe that
 * accepts it judges the decode (checkDecode) once both are done.
 */
export async function analyseAudio(
  file: string,
  probing: Promise<ProbedAudio>,
  options: AnalyseOptions,
): Promise<Analysis> {
  const limit = options.maxDurationS;
  const expectedS = durationFromSize((await stat(file)).size, limit);
  const pcmSampleRate = pcmRateFor(expectedS);
  // Progress is against the size's estimate until the probe says how long the audio claims to be.
  let progressScale = 1;
  probing.then(
    (probed) => {
      if (probed.declaredS) progressScale = expectedS / probed.declaredS;
    },
    () => undefined,
  );
  const onProgress = options.onProgress;
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  const decoding = runFfmpeg({
    input: file,
    outputs: [
      {
        target: options.pcmPath,
        // Decoding stops just past the limit, so a file lying about its length cannot keep us busy.
        options: [
          '-map',
          '0:a:0',
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
    ...(onProgress
      ? { onProgress: (fraction: number) => onProgress(Math.min(1, fraction * progressScale)) }
      : {}),
    signal,
    timeoutMs: decodeTimeoutMs(expectedS) * 2,
  });
  // Handled here: the probe's refusal is the answer, not the decode's failure it causes.
  decoding.catch(() => undefined);
  let probed: ProbedAudio;
  try {
    probed = await probing;
  } catch (error) {
    stop.abort();
    await decoding.catch(() => undefined);
    throw error;
  }
  let stderr: string;
  try {
    ({ stderr } = await decoding);
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
