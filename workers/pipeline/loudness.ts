/**
 * Loudness: what the analysis decode measures (ebur128, EBU R128 / ITU-R BS.1770) and the one
 * linear gain the renditions get from it.
 *
 * Two-pass normalisation without loudnorm: loudnorm measures and renders at 192 kHz (its
 * internal upsampling), which made it most of a job's time. ebur128 measures the same
 * quantities (true peak with 4x oversampling) for about a fifth of the CPU: 0.32 s against
 * 1.37 s for a 60 s MP3 here, decode included. With the measurement in hand the render needs
 * no loudness filter at all, only `volume`: the constant gain loudnorm's linear mode applies.
 */

/** Streaming targets: -14 LUFS integrated (what the big services play at), -1 dBTP ceiling. */
export const LOUDNESS_TARGET = { integratedLufs: -14, truePeakDb: -1 } as const;

/**
 * The measuring filter. framelog=verbose: at the info level ebur128 logs every 100 ms block
 * (108,000 lines for three hours), which we would parse and keep for nothing.
 */
export const LOUDNESS_FILTER = 'ebur128=peak=true:framelog=verbose';

export interface LoudnessMeasurement {
  /** Integrated loudness of the source, LUFS. */
  inputI: number;
  /** True peak of the source (4x oversampled), dBTP. */
  inputTp: number;
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

/**
 * Reads ebur128's summary (printed when the filter closes). Null when the source is (digital)
 * silence: there is nothing to normalise and the renditions keep the source level.
 */
export function parseLoudness(stderr: string): LoudnessMeasurement | null {
  const at = stderr.lastIndexOf('Summary:');
  if (at < 0) throw new Error('ebur128 printed no summary');
  const summary = stderr.slice(at);
  const value = (label: RegExp): number => {
    const match = label.exec(summary);
    if (!match?.[1]) throw new Error(`ebur128's summary has no ${label.source}`);
    return match[1] === '-inf' ? Number.NEGATIVE_INFINITY : Number(match[1]);
  };
  const inputI = value(/I:\s+(-?[\d.]+|-inf) LUFS/);
  if (!(inputI > SILENCE_LUFS)) return null;
  return {
    inputI,
    // The first "Threshold" is the integrated one; the second belongs to the loudness range.
    inputThresh: value(/Threshold:\s+(-?[\d.]+|-inf) LUFS/),
    inputLra: value(/LRA:\s+(-?[\d.]+) LU/),
    inputTp: value(/Peak:\s+(-?[\d.]+|-inf) dBFS/),
  };
}

/** The gain the renditions get: towards the target, never past the true-peak ceiling. */
export function planNormalisation(measurement: LoudnessMeasurement | null): Normalisation {
  if (!measurement) return { mode: 'none', gainDb: 0 };
  const { integratedLufs, truePeakDb } = LOUDNESS_TARGET;
  const toTarget = integratedLufs - measurement.inputI;
  const toCeiling = truePeakDb - measurement.inputTp;
  // The same test loudnorm's linear mode makes (measured TP + gain <= target TP).
  if (toTarget <= toCeiling) return { mode: 'linear', gainDb: round2(toTarget) };
  return { mode: 'peak-limited', gainDb: round2(toCeiling) };
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}
