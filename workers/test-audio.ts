/**
 * Test audio made on the spot with ffmpeg's lavfi sources, and measurements of what the
 * pipeline produced. For tests only.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { runFfmpeg } from '../common/index.js';
import type { BlobStorage } from '../common/ports/index.js';

export type TestFormat = 'wav' | 'mp3' | 'flac' | 'ogg' | 'opus';

const ENCODER: Record<TestFormat, string[]> = {
  wav: ['-c:a', 'pcm_s16le', '-f', 'wav'],
  mp3: ['-c:a', 'libmp3lame', '-b:a', '192k', '-f', 'mp3'],
  flac: ['-c:a', 'flac', '-f', 'flac'],
  ogg: ['-c:a', 'libvorbis', '-q:a', '4', '-f', 'ogg'],
  /** Opus in Ogg, as the live recorder writes it. */
  opus: ['-c:a', 'libopus', '-b:a', '64k', '-f', 'ogg'],
};

/** Encodes a lavfi source (e.g. `sine=f=440:d=3`) into `target`, with an optional filter. */
export async function makeAudio(
  target: string,
  format: TestFormat,
  source: string,
  options: { filter?: string; channels?: 1 | 2; sampleRate?: number } = {},
): Promise<string> {
  await runFfmpeg({
    input: source,
    inputOptions: ['-f', 'lavfi'],
    outputs: [
      {
        target,
        options: [
          ...(options.filter ? ['-af', options.filter] : []),
          '-ac',
          String(options.channels ?? 2),
          '-ar',
          String(options.sampleRate ?? 44_100),
          ...ENCODER[format],
        ],
      },
    ],
  });
  return target;
}

/** Adds a picture to an MP3 as its front cover (ID3 APIC). */
export async function addCover(audio: string, target: string): Promise<string> {
  const picture = `${target}.cover.jpg`;
  await runFfmpeg({
    input: 'color=c=red:s=64x64:d=1',
    inputOptions: ['-f', 'lavfi'],
    outputs: [{ target: picture, options: ['-frames:v', '1', '-f', 'image2'] }],
  });
  await runFfmpeg({
    input: audio,
    extraInputs: [picture],
    outputs: [
      {
        target,
        options: [
          '-map',
          '0:a',
          '-map',
          '1:v',
          '-c',
          'copy',
          '-id3v2_version',
          '3',
          '-metadata:s:v',
          'comment=Cover (front)',
          '-f',
          'mp3',
        ],
      },
    ],
  });
  return target;
}

export interface MeasuredLoudness {
  /** Integrated loudness, LUFS (-70 for silence). */
  integratedLufs: number;
  /** True peak, dBTP. */
  truePeakDb: number;
}

/**
 * Integrated loudness and true peak as ffmpeg's ebur128 filter measures them: the reference
 * the pipeline's outputs are held to, parsed here on its own rather than with the pipeline's
 * parser under test.
 */
export async function measuredLoudness(file: string, inputOptions: string[] = []): Promise<MeasuredLoudness> {
  const { stderr } = await runFfmpeg({
    input: file,
    inputOptions,
    outputs: [
      {
        target: '-',
        options: ['-map', '0:a:0', '-af', 'ebur128=peak=true:framelog=verbose', '-f', 'null'],
      },
    ],
  });
  const summary = stderr.slice(stderr.lastIndexOf('Summary:'));
  const integrated = /I:\s+(-?[\d.]+) LUFS/.exec(summary)?.[1];
  const peak = /Peak:\s+(-?[\d.]+|-inf) dBFS/.exec(summary)?.[1];
  if (integrated === undefined || peak === undefined) throw new Error('ebur128 printed no summary');
  return {
    integratedLufs: Number(integrated),
    truePeakDb: peak === '-inf' ? Number.NEGATIVE_INFINITY : Number(peak),
  };
}

/** Integrated loudness (LUFS) as ffmpeg's ebur128 filter measures it. */
export async function integratedLoudness(file: string, inputOptions: string[] = []): Promise<number> {
  return (await measuredLoudness(file, inputOptions)).integratedLufs;
}

/** Copies blobs to `dir`, keeping the part of each key after `prefix/` as the relative path. */
export async function downloadBlobs(
  blobs: BlobStorage,
  keys: readonly string[],
  prefix: string,
  dir: string,
): Promise<void> {
  for (const key of keys) {
    const target = path.join(dir, key.slice(prefix.length + 1));
    await mkdir(path.dirname(target), { recursive: true });
    await pipeline(await blobs.get(key), createWriteStream(target));
  }
}

/** Every file under `root`, relative, skipping dot-directories (the file adapter's metadata). */
export async function listFiles(root: string): Promise<string[]> {
  try {
    await stat(root);
  } catch {
    return [];
  }
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(root, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'))
    .filter((file) => !file.split('/').some((part) => part.startsWith('.')))
    .sort();
}
