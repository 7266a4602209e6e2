/**
 * Stage 4: waveform peaks from the PCM the analysis pass decoded (mono, s16le, low rate).
 * Each point is the largest absolute sample of its slice of the track, scaled so the loudest
 * point is 1; silence stays at 0 and a silent track is all zeros.
 */
import { createReadStream } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';

export const DEFAULT_WAVEFORM_POINTS = 1_000;
export const MAX_WAVEFORM_POINTS = 100_000;

export interface Waveform {
  version: 1;
  points: number;
  durationS: number;
  /** `points` values in 0..1, rounded to 4 decimals. */
  peaks: number[];
}

export async function computePeaks(pcmPath: string, points: number): Promise<number[]> {
  if (!Number.isInteger(points) || points < 1 || points > MAX_WAVEFORM_POINTS) {
    throw new Error(`waveform points must be an integer from 1 to ${MAX_WAVEFORM_POINTS}`);
  }
  const samples = Math.floor((await stat(pcmPath)).size / 2);
  const peaks = new Array<number>(points).fill(0);
  if (samples === 0) return peaks;
  // Sample n belongs to bucket floor(n * points / samples): every bucket gets its share,
  // and when there are fewer samples than points, a sample fills the buckets it spans.
  let index = 0;
  let carry: number | null = null;
  for await (const chunk of createReadStream(pcmPath, { highWaterMark: 1 << 16 }) as AsyncIterable<Buffer>) {
    let offset = 0;
    if (carry !== null && chunk.length > 0) {
      record(Buffer.from([carry, chunk[0] ?? 0]).readInt16LE(0));
      offset = 1;
      carry = null;
    }
    for (; offset + 1 < chunk.length; offset += 2) record(chunk.readInt16LE(offset));
    if (offset < chunk.length) carry = chunk[offset] ?? 0;
  }

  function record(sample: number): void {
    const magnitude = Math.abs(sample) / 32768;
    const first = Math.floor((index * points) / samples);
    const last = Math.max(first, Math.ceil(((index + 1) * points) / samples) - 1);
    for (let bucket = first; bucket <= last && bucket < points; bucket++) {
      if (magnitude > (peaks[bucket] ?? 0)) peaks[bucket] = magnitude;
    }
    index += 1;
  }

  const loudest = peaks.reduce((max, peak) => Math.max(max, peak), 0);
  return peaks.map((peak) => (loudest > 0 ? Math.round((peak / loudest) * 10_000) / 10_000 : 0));
}

export async function writeWaveform(
  pcmPath: string,
  target: string,
  points: number,
  durationS: number,
): Promise<Waveform> {
  const waveform: Waveform = {
    version: 1,
    points,
    durationS: Math.round(durationS * 1000) / 1000,
    peaks: await computePeaks(pcmPath, points),
  };
  await writeFile(target, JSON.stringify(waveform));
  return waveform;
}
