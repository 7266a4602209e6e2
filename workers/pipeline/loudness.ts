/**
 * Loudness: what the analysis decode measures (ebur128, EBU R128 / ITU-R BS.1770) and the one
 * linear gain the renditions get from it.
 *
 * Two-pass normalisation without loudnorm: loudnorm measures and renders at 192 kHz (its
 * internal upsampling), which made it most of a job's time. ebur128 measures the same
 * quantities for a fraction of the CPU, and with the measurement in hand the render needs no
 * loudness filter at all, only `volume`: the constant gain loudnorm's linear mode applies.
 *
 * The analysis measures at the source rate: integrated loudness, loudness range and the sample
 * peak. The true peak needs 4x oversampling (ebur128 resamples to 192 kHz for it), which was
 * half of the analysis's CPU (0.15 of 0.32 s for a 60 s MP3 here), and it only matters when
 * the gain could bring the peaks near the ceiling. So a second decode measures it beside the
 * analysis, on the other core, and is used only when the sample peak cannot rule that out
 * (`needsTruePeak`); otherwise it is stopped when the analysis ends (analysis.ts).
 */

/** Streaming targets: -14 LUFS integrated (what the big services play at), -1 dBTP ceiling. */
export const LOUDNESS_TARGET = { integratedLufs: -14, truePeakDb: -1 } as const;

/**
 * The measuring filter of the analysis pass. framelog=verbose: at the info level ebur128 logs
 * every 100 ms block (108,000 lines for three hours), which we would parse and keep for nothing.
 */
export const LOUDNESS_FILTER = 'ebur128=peak=sample:framelog=verbose';

/** The second pass, when the true peak is needed (4x oversampled, as BS.1770 defines it). */
export const TRUE_PEAK_FILTER = 'ebur128=peak=true:framelog=verbose';

/**
 * How far above the sample peak the true peak is assumed to be at most, when it was not
 * measured. Between samples a band-limited signal overshoots its samples by up to 3 dB for a
 * tone at a quarter of the sample rate at the worst phase, and clipped, limited masters show
 * intersample overs of a few dB; twice the first leaves room for both.
 */
export const INTERSAMPLE_HEADROOM_DB = 6;

export interface LoudnessMeasurement {
  /** Integrated loudness of the source, LUFS. */
  inputI: number;
  /** Sample peak of the source, dBFS. */
  inputSamplePeak: number;
  /**
   * True peak of the source (4x oversampled), dBTP; null when it was not measured because the
   * sample peak showed the gain could not bring it near the ceiling (`needsTruePeak`).
   */
  inputTp: number | null;
  /** Loudness range, LU. */
  inputLra: number;
  /** The relative gate of the integrated measurement, LUFS. */
  inputThresh: number;
}

/**
 * How the renditions were levelled:
 * - linear: one gain brings the source to the target with its true peak at or under the ceiling;
 * - peak-limited: the gain that reaches the target would push the true peak over the ceiling,
 *   so the gain stops at the ceiling and the renditions play quieter than the target (loud
 *   masters that clip, and quiet material with sharp peaks). loudnorm compressed such
 *   material dynamically instead; a constant gain keeps the music's dynamics, as the big
 *   services do for the same case;
 * - none: the source is silence, there is nothing to level.
 */
export type NormalisationMode = 'linear' | 'peak-limited' | 'none';

export interface Normalisation {
  mode: NormalisationMode;
  /** The gain the renditions get, dB (0 for 'none'). */
  gainDb: number;
}

/** Below R128's absolute gate everything is silence as far as loudness goes. */
const SILENCE_LUFS = -70;

type Summary = (label: RegExp) => number;

/** ebur128's summary (printed when the filter closes), as a reader of one value by its label. */
function summaryOf(stderr: string): Summary {
  const at = stderr.lastIndexOf('Summary:');
  if (at < 0) throw new Error('ebur128 printed no summary');
  const summary = stderr.slice(at);
  return (label) => {
    const match = label.exec(summary);
    if (!match?.[1]) throw new Error(`ebur128's summary has no ${label.source}`);
    return match[1] === '-inf' ? Number.NEGATIVE_INFINITY : Number(match[1]);
  };
}

const SAMPLE_PEAK = /Sample peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS/;
const TRUE_PEAK = /True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS/;

/**
 * Reads the analysis pass's summary. Null when the source is (digital) silence: there is
 * nothing to normalise and the renditions keep the source level.
 */
export function parseLoudness(stderr: string): LoudnessMeasurement | null {
  const value = summaryOf(stderr);
  const inputI = value(/I:\s+(-?[\d.]+|-inf) LUFS/);
  if (!(inputI > SILENCE_LUFS)) return null;
  return {
    inputI,
    // The first "Threshold" is the integrated one; the second belongs to the loudness range.
    inputThresh: value(/Threshold:\s+(-?[\d.]+|-inf) LUFS/),
    inputLra: value(/LRA:\s+(-?[\d.]+) LU/),
    inputSamplePeak: value(SAMPLE_PEAK),
    inputTp: TRUE_PEAK.test(stderr) ? value(TRUE_PEAK) : null,
  };
}

/** Reads the true-peak pass's summary, dBTP. */
export function parseTruePeak(stderr: string): number {
  return summaryOf(stderr)(TRUE_PEAK);
}

/**
 * Whether the gain needs the true peak: at the gain that reaches the target, the sample peak
 * plus the intersample headroom could cross the ceiling. Loud masters (peaks near 0 dBFS, a
 * gain of a few dB down) and quiet material with sharp peaks need it; most material does not.
 */
export function needsTruePeak(measurement: LoudnessMeasurement): boolean {
  const toTarget = LOUDNESS_TARGET.integratedLufs - measurement.inputI;
  return measurement.inputSamplePeak + INTERSAMPLE_HEADROOM_DB + toTarget > LOUDNESS_TARGET.truePeakDb;
}

/**
 * The gain the renditions get: towards the target, never past the true-peak ceiling. Without
 * a measured true peak, the sample peak plus the intersample headroom stands for it.
 */
export function planNormalisation(measurement: LoudnessMeasurement | null): Normalisation {
  if (!measurement) return { mode: 'none', gainDb: 0 };
  const { integratedLufs, truePeakDb } = LOUDNESS_TARGET;
  const peak = measurement.inputTp ?? measurement.inputSamplePeak + INTERSAMPLE_HEADROOM_DB;
  const toTarget = integratedLufs - measurement.inputI;
  const toCeiling = truePeakDb - peak;
  // The same test loudnorm's linear mode makes (measured TP + gain <= target TP).
  if (toTarget <= toCeiling) return { mode: 'linear', gainDb: round2(toTarget) };
  return { mode: 'peak-limited', gainDb: round2(toCeiling) };
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}
