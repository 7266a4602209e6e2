import { describe, expect, it } from 'vitest';
import {
  INTERSAMPLE_HEADROOM_DB,
  LOUDNESS_TARGET,
  type LoudnessMeasurement,
  needsTruePeak,
  parseLoudness,
  parseTruePeak,
  planNormalisation,
} from './loudness.js';

/**
 * What ffmpeg 5.1's ebur128 prints when it closes, with `-loglevel level+info`: the sample
 * peak with peak=sample (the analysis pass), the true peak with peak=true.
 */
function summary(i: string, peak: string, kind: 'Sample' | 'True' = 'Sample'): string {
  return [
    '[info] size=N/A time=00:01:00.00 bitrate=N/A speed= 206x',
    '[Parsed_ebur128_0 @ 0x55fcb557a6c0] [info] Summary:',
    '',
    '  Integrated loudness:',
    `    I:         ${i} LUFS`,
    '    Threshold: -32.6 LUFS',
    '',
    '  Loudness range:',
    '    LRA:         4.5 LU',
    '    Threshold: -42.6 LUFS',
    '    LRA low:   -24.6 LUFS',
    '    LRA high:  -20.1 LUFS',
    '',
    `  ${kind} peak:`,
    `    Peak:      ${peak} dBFS`,
    '',
  ].join('\n');
}

const measured = (
  inputI: number,
  inputTp: number | null,
  inputSamplePeak = inputTp ?? -60,
): LoudnessMeasurement => ({
  inputI,
  inputTp,
  inputSamplePeak,
  inputLra: 0,
  inputThresh: inputI - 10,
});

describe('parseLoudness', () => {
  it('reads the integrated loudness, its gate, the loudness range and the sample peak', () => {
    expect(parseLoudness(summary('-22.6', '-16.9'))).toEqual({
      inputI: -22.6,
      inputThresh: -32.6,
      inputLra: 4.5,
      inputSamplePeak: -16.9,
      inputTp: null,
    });
  });

  it('reads the true peak from the true-peak pass, not the sample peak', () => {
    expect(parseTruePeak(summary('-22.6', '-15.2', 'True'))).toBe(-15.2);
    expect(() => parseTruePeak(summary('-22.6', '-16.9'))).toThrow(/True peak/);
  });

  it('calls digital silence silence', () => {
    expect(parseLoudness(summary('-70.0', '-inf'))).toBeNull();
  });

  it('fails loudly when ebur128 printed no summary', () => {
    expect(() => parseLoudness('[error] something else went wrong')).toThrow(/no summary/);
  });
});

describe('needsTruePeak', () => {
  it('skips the true peak when the sample peak plus the headroom stays under the ceiling', () => {
    // +16 dB to the target puts the sample peak at -20 + 16 = -4 dBFS: -4 + 6 > -1, so it is needed.
    expect(needsTruePeak(measured(-30, null, -20))).toBe(true);
    // At -24 dBFS the sample peak lands at -8: even 6 dB of intersample overs stay under -1.
    expect(needsTruePeak(measured(-30, null, -24))).toBe(false);
    expect(-24 + 16 + INTERSAMPLE_HEADROOM_DB).toBeLessThanOrEqual(LOUDNESS_TARGET.truePeakDb);
  });

  it('measures the true peak of loud masters, whose peaks sit near full scale', () => {
    expect(needsTruePeak(measured(-9, null, -0.1))).toBe(true);
  });
});

describe('planNormalisation', () => {
  it('goes linear to the target on the sample peak alone when the true peak was not needed', () => {
    expect(planNormalisation(measured(-30, null, -24))).toEqual({ mode: 'linear', gainDb: 16 });
  });

  it('applies no gain to silence', () => {
    expect(planNormalisation(null)).toEqual({ mode: 'none', gainDb: 0 });
  });

  it('brings quiet material up to the target when its peaks stay under the ceiling', () => {
    expect(planNormalisation(measured(-30, -20))).toEqual({ mode: 'linear', gainDb: 16 });
  });

  it('brings loud material down to the target, whatever its peaks', () => {
    expect(planNormalisation(measured(-8.5, 0.8))).toEqual({ mode: 'linear', gainDb: -5.5 });
  });

  it('takes a gain that puts the true peak exactly on the ceiling as linear, like loudnorm', () => {
    expect(planNormalisation(measured(-20, -7))).toEqual({ mode: 'linear', gainDb: 6 });
  });

  it('stops the gain at the true-peak ceiling when the target would cross it', () => {
    const plan = planNormalisation(measured(-24, -3.2));
    expect(plan).toEqual({ mode: 'peak-limited', gainDb: 2.2 });
    expect(-3.2 + plan.gainDb).toBe(LOUDNESS_TARGET.truePeakDb);
  });

  it('turns a clipping master down below the target to keep its peaks under the ceiling', () => {
    expect(planNormalisation(measured(-13, 2))).toEqual({ mode: 'peak-limited', gainDb: -3 });
  });
});
