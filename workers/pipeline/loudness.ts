/**
 * Stage 2: the first loudnorm pass measures the source (EBU R128), so the second pass in the
 * renditions stage can apply one linear gain where the target allows it instead of
 * dynamically compressing.
 */
import { z } from 'zod';
import { lastJsonObject, runFfmpeg } from '../ffmpeg.js';
import { decodeTimeoutMs } from './probe.js';

/** Streaming targets: -14 LUFS integrated (what the big services play at), -1 dBTP ceiling. */
export const LOUDNESS_TARGET = { integratedLufs: -14, truePeakDb: -1, loudnessRange: 11 } as const;

export interface LoudnessMeasurement {
  /** Integrated loudness of the source, LUFS. */
  inputI: number;
  /** True peak of the source, dBTP. */
  inputTp: number;
  inputLra: number;
  inputThresh: number;
  targetOffset: number;
}

const number = z.string().transform((value, context) => {
  const parsed = Number(value);
  if (!Number.isFinite(parsed)) {
    context.addIssue({ code: 'custom', message: `not a finite number: ${value}` });
    return z.NEVER;
  }
  return parsed;
});

const reportSchema = z.object({
  input_i: number,
  input_tp: number,
  input_lra: number,
  input_thresh: number,
  target_offset: number,
});

export interface MeasureOptions {
  durationS: number;
  onProgress?: (fraction: number) => void;
  signal?: AbortSignal;
}

function targetParameters(): string {
  const { integratedLufs, truePeakDb, loudnessRange } = LOUDNESS_TARGET;
  return `I=${integratedLufs}:TP=${truePeakDb}:LRA=${loudnessRange}`;
}

/**
 * Null when the source is (digital) silence: loudnorm reports -inf, there is nothing to
 * normalise, and the renditions keep the source level.
 */
export async function measureLoudness(
  file: string,
  streamIndex: number,
  options: MeasureOptions,
): Promise<LoudnessMeasurement | null> {
  const { stderr } = await runFfmpeg({
    input: file,
    outputs: [
      {
        target: '-',
        options: [
          '-map',
          `0:${streamIndex}`,
          '-af',
          `loudnorm=${targetParameters()}:print_format=json`,
          '-f',
          'null',
        ],
      },
    ],
    durationS: options.durationS,
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    timeoutMs: decodeTimeoutMs(options.durationS) * 4,
  });
  const report = reportSchema.safeParse(lastJsonObject(stderr));
  if (!report.success) return null;
  const value = report.data;
  // Below the absolute gate of R128 everything is silence as far as loudness goes.
  if (value.input_i < -70) return null;
  return {
    inputI: value.input_i,
    inputTp: value.input_tp,
    inputLra: value.input_lra,
    inputThresh: value.input_thresh,
    targetOffset: value.target_offset,
  };
}

/** The second pass: loudnorm fed the first pass's measurement. */
export function normalisationFilter(measurement: LoudnessMeasurement): string {
  const m = measurement;
  // loudnorm reads measured_LRA=0 as "not measured" and then refuses linear mode; a perfectly
  // steady source (a tone, a test signal) really measures 0, so it is passed as 0.01.
  const lra = Math.max(m.inputLra, 0.01);
  return (
    `loudnorm=${targetParameters()}` +
    `:measured_I=${m.inputI}:measured_TP=${m.inputTp}:measured_LRA=${lra}` +
    `:measured_thresh=${m.inputThresh}:offset=${m.targetOffset}:linear=true:print_format=json`
  );
}

/** Which mode loudnorm used in the second pass ("linear" is a plain gain). */
export function normalisationType(stderr: string): 'linear' | 'dynamic' | null {
  const report = lastJsonObject(stderr);
  if (report && typeof report === 'object' && 'normalization_type' in report) {
    const type = (report as { normalization_type: unknown }).normalization_type;
    if (type === 'linear' || type === 'dynamic') return type;
  }
  return null;
}
