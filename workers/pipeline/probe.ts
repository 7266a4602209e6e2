/**
 * Stage 1: decide from what the file says about itself whether it can be usable audio, and
 * describe it. ffprobe reads the container; the full decode that proves the rest (not corrupt,
 * not cut short, its true duration) is the analysis pass, judged by `checkDecode` below.
 */
import { stat } from 'node:fs/promises';
import { FfmpegError, ffprobe, type ProbeStream } from '../../common/index.js';
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

export interface ProbedAudio extends Omit<AudioMetadata, 'durationS'> {
  /** The length the container claims, when it claims one. */
  declaredS: number | null;
  /** The demuxer guessed the length from the bitrate (an MP3 without a Xing header). */
  durationEstimated: boolean;
  /** The input stream the renditions are made from: the first audio stream. */
  audioStreamIndex: number;
  /** An embedded picture (ID3 APIC, FLAC PICTURE, MP4 covr), when there is one. */
  coverStream: ProbeStream | null;
}

export interface ProbeOptions {
  maxDurationS: number;
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

  return {
    formatName: probe.format.formatName ?? 'unknown',
    codec: audio.codec_name,
    bitrate: roundOrNull(audio.bit_rate ?? probe.format.bitRate),
    sampleRate: audio.sample_rate,
    channels: audio.channels,
    declaredS: declaredS ?? null,
    durationEstimated: estimated,
    audioStreamIndex: audio.index,
    coverStream: pictures[0] ?? null,
  };
}

export interface DecodeReport {
  /** Seconds of audio the full decode produced. */
  decodedS: number;
  /** The decoder's error lines, paths hidden. */
  errors: string[];
}

/**
 * Judges the full decode (analysis.ts runs it): only decoding the whole stream proves the file
 * is not corrupt or cut short, and gives its true duration.
 */
export function checkDecode(probed: ProbedAudio, decode: DecodeReport, maxDurationS: number): void {
  const { decodedS, errors } = decode;
  const declaredS = probed.declaredS;
  if (decodedS === 0) {
    throw new AudioRejectedError(
      errors.length > 0
        ? `the file is corrupt: no audio could be decoded (${errors[0]})`
        : 'the file contains no audio samples',
    );
  }
  if (decodedS > maxDurationS) {
    throw new AudioRejectedError(`the audio is longer than the limit of ${formatSeconds(maxDurationS)}`);
  }
  if (
    declaredS &&
    !probed.durationEstimated &&
    declaredS - decodedS > Math.max(TRUNCATION_TOLERANCE_S, declaredS * 0.01)
  ) {
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
}

/** ffmpeg names the input by its path, which is ours (a temp dir), not the user's business. */
export function hidePath(message: string, file: string): string {
  return message.split(file).join('the file');
}

function roundOrNull(value: number | null | undefined): number | null {
  return value === null || value === undefined || !Number.isFinite(value) ? null : Math.round(value);
}
