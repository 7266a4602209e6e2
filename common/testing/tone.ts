/**
 * Where a tone is in a recording, for tests: an audio file decoded to 48 kHz mono, and the
 * loudness and purity of a short window of it. The recording and replay tests read their
 * results with it (a tone where it was sent, silence where nothing was recorded).
 */
import { readFile } from 'node:fs/promises';
import { runFfmpeg } from '../ffmpeg.js';

/** An audio file decoded to 48 kHz mono, its samples and its length; for measuring where a tone is. */
export interface DecodedAudio {
  samples: Int16Array;
  durationS: number;
  /** RMS and share of the energy at `frequency` of the 0.2 s window starting at `atS`. */
  toneAt(atS: number, frequency?: number): { rms: number; share: number };
}

export async function decodeMono(file: string, scratch: string): Promise<DecodedAudio> {
  await runFfmpeg({
    input: file,
    outputs: [{ target: scratch, options: ['-f', 's16le', '-ac', '1', '-ar', '48000', '-y'] }],
  });
  const data = await readFile(scratch);
  const samples = new Int16Array(data.buffer, data.byteOffset, data.length / 2);
  return {
    samples,
    durationS: samples.length / 48_000,
    toneAt(atS, frequency = 440) {
      const start = Math.round(atS * 48_000);
      const n = 9600;
      let energy = 0;
      let re = 0;
      let im = 0;
      for (let i = 0; i < n; i++) {
        const value = samples[start + i] ?? 0;
        energy += value * value;
        const phase = (2 * Math.PI * frequency * i) / 48_000;
        re += value * Math.cos(phase);
        im += value * Math.sin(phase);
      }
      const rms = Math.sqrt(energy / n);
      // Share of the energy at the frequency: near 1 for a pure tone, near 0 for silence or noise.
      const share = energy > 0 ? (2 * (re * re + im * im)) / (n * energy) : 0;
      return { rms, share };
    },
  };
}
