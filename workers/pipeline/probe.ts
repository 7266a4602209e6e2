/**
 * Stage 1: decide whether the upload is usable audio, and describe it.
 *
 * ffprobe says what the container claims; then the whole audio stream is decoded once (to
 * low-rate mono PCM, which the waveform stage reuses) because only a full decode proves the
 * file is not corrupt or cut short, and gives its true duration.
 */
import { stat } from 'node:fs/promises';
import {
  errorLines,
  FfmpegAbortedError,
  FfmpegError,
  ffprobe,
  type ProbeStream,
  runFfmpeg,
} from '../ffmpeg.js';
import { findTruncation } from './container-check.js';
import { AudioRejectedError } from './rejection.js';

export interface AudioMetadata {
  /** ffprobe's container name, e.g. "wav", "mp3", "flac", "ogg", "mov,mp4,m4a,3gp,3g2,mj2". */
  formatName: string;
  codec: string;
  /** Bits per second of the source (null when the container does not say). */
  bitrate: number | null;
  sampleRate: number;
  channels: number;
  /** Measured by decoding, not taken from the header. */
  durationS: number;
}

export interface ProbedAudio {
  metadata: AudioMetadata;
  /** The input stream the renditions are made from. */
  audioStreamIndex: number;
  /** An embedded picture (ID3 APIC, FLAC PICTURE, MP4 covr), when there is one. */
  coverStream: ProbeStream | null;
  /** The decoded audio as mono signed 16-bit little-endian PCM at `pcmSampleRate`. */
  pcmPath: string;
  pcmSampleRate: number;
}

export interface ProbeOptions {
  maxDurationS: number;
  /** Where the decoded PCM is written. */
  pcmPath: string;
  onProgress?: (fraction: number) => void;
  signal?: AbortSignal;
}

/** A cut file usually loses far more than this; encoder padding and rounding stay well below. */
const TRUNCATION_TOLERANCE_S = 0.5;

export function formatSeconds(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds * 10) / 10} s`;
  const minutes = Math.floor(seconds / 60);
  const rest = Math.round(seconds % 60);
  return `${minutes} min ${rest} s`;
}

/** Enough samples per waveform bucket for short files, a bounded PCM file for long ones. */
export function pcmRateFor(durationS: number): number {
  if (durationS <= 600) return 8_000;
  if (durationS <= 3_600) return 2_000;
  return 1_000;
}

export async function probeAudio(file: string, options: ProbeOptions): Promise<ProbedAudio> {
  const { size } = await stat(file);
  if (size === 0) throw new AudioRejectedError('the file is empty');

  let probe: Awaited<ReturnType<typeof ffprobe>>;
  try {
    probe = await ffprobe(file, options.signal);
  } catch (error) {
    if (error instanceof FfmpegError) {
      throw new AudioRejectedError('the file is not a recognised audio format (it may be corrupt)');
    }
    throw error;
  }

  const audio = probe.streams.find((stream) => stream.codec_type === 'audio');
  const pictures = probe.streams.filter(
    (stream) => stream.codec_type === 'video' && stream.disposition?.attached_pic === 1,
  );
  const video = probe.streams.find(
    (stream) => stream.codec_type === 'video' && stream.disposition?.attached_pic !== 1,
  );
  if (!audio) throw new AudioRejectedError('the file contains no audio stream');
  if (video) throw new AudioRejectedError('the file contains video; upload an audio file');
  if (!audio.codec_name || !audio.sample_rate || !audio.channels) {
    throw new AudioRejectedError('the audio stream cannot be read (unknown codec or layout)');
  }

  const estimated = probe.warnings.some((line) => /estimating duration from bitrate/i.test(line));
  const declaredS = audio.duration ?? probe.format.durationS;
  const limit = options.maxDurationS;
  if (declaredS !== null && declaredS !== undefined && declaredS > limit && !estimated) {
    throw new AudioRejectedError(
      `the audio is ${formatSeconds(declaredS)} long; the limit is ${formatSeconds(limit)}`,
    );
  }

  const truncation = await findTruncation(file, probe.format.formatName);
  if (truncation) throw new AudioRejectedError(truncation);

  const pcmSampleRate = pcmRateFor(declaredS ?? limit);
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
            `0:${audio.index}`,
            '-t',
            String(limit + 1),
            '-ac',
            '1',
            '-ar',
            String(pcmSampleRate),
            '-f',
            's16le',
          ],
        },
      ],
      durationS: declaredS ?? limit,
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      timeoutMs: decodeTimeoutMs(declaredS ?? limit),
    }));
  } catch (error) {
    if (error instanceof FfmpegError) {
      throw new AudioRejectedError(`the audio could not be decoded: ${hidePath(error.message, file)}`);
    }
    if (error instanceof FfmpegAbortedError) throw error;
    throw error;
  }

  const decodedS = (await stat(options.pcmPath)).size / 2 / pcmSampleRate;
  const errors = errorLines(stderr).map((line) => hidePath(line, file));
  if (decodedS === 0) {
    throw new AudioRejectedError(
      errors.length > 0
        ? `the file is corrupt: no audio could be decoded (${errors[0]})`
        : 'the file contains no audio samples',
    );
  }
  if (decodedS > limit) {
    throw new AudioRejectedError(`the audio is longer than the limit of ${formatSeconds(limit)}`);
  }
  if (declaredS && !estimated && declaredS - decodedS > Math.max(TRUNCATION_TOLERANCE_S, declaredS * 0.01)) {
    throw new AudioRejectedError(
      `the file is truncated: it declares ${formatSeconds(declaredS)} of audio but only ${formatSeconds(decodedS)} could be decoded`,
    );
  }
  // Decoders conceal the odd damaged frame, which real-world files have; many means a broken file.
  if (errors.length > 1 + decodedS / 60) {
    throw new AudioRejectedError(
      `the file is corrupt: ${errors.length} decoding errors (first: ${errors[0]})`,
    );
  }

  return {
    metadata: {
      formatName: probe.format.formatName ?? 'unknown',
      codec: audio.codec_name,
      bitrate: roundOrNull(audio.bit_rate ?? probe.format.bitRate),
      sampleRate: audio.sample_rate,
      channels: audio.channels,
      durationS: decodedS,
    },
    audioStreamIndex: audio.index,
    coverStream: pictures[0] ?? null,
    pcmPath: options.pcmPath,
    pcmSampleRate,
  };
}

/** ffmpeg names the input by its path, which is ours (a temp dir), not the user's business. */
function hidePath(message: string, file: string): string {
  return message.split(file).join('the file');
}

function roundOrNull(value: number | null | undefined): number | null {
  return value === null || value === undefined || !Number.isFinite(value) ? null : Math.round(value);
}

/** Generous: decoding runs at hundreds of times realtime; only a hung process hits this. */
export function decodeTimeoutMs(durationS: number): number {
  return 60_000 + Math.ceil(durationS) * 1_000;
}
