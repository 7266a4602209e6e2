import { describe, expect, it } from 'vitest';
import { LOUDNESS_TARGET, type LoudnessMeasurement, parseLoudness, planNormalisation } from './loudness.js';

/** What ffmpeg 5.1's ebur128 prints when it closes, with `-loglevel level+info`. */
function summary(i: string, peak: string): string {
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
    '  True peak:',
    `    Peak:      ${peak} dBFS`,
    '',
  ].join('\n');
}

const measured = (inputI: number, inputTp: number): LoudnessMeasurement => ({
  inputI,
  inputTp,
  inputLra: 0,
  inputThresh: inputI - 10,
});

describe('parseLoudness', () => {
  it('reads the integrated loudness, its gate, the loudness range and the true peak', () => {
    expect(parseLoudness(summary('-22.6', '-16.9'))).toEqual({
      inputI: -22.6,
      inputThresh: -32.6,
      inputLra: 4.5,
      inputTp: -16.9,
    });
  });

  it('calls digital silence silence', () => {
    expect(parseLoudness(summary('-70.0', '-inf'))).toBeNull();
  });

  it('fails loudly when ebur128 printed no summary', () => {
    expect(() => parseLoudness('[error] something else went wrong')).toThrow(/no summary/);
  });
});

describe('planNormalisation', () => {
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
