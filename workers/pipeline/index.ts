/**
 * The transcoding pipeline for one track: fetch the source from BlobStorage into a temp
 * directory, run the stages there, publish the outputs under `tracks/<trackId>/<version>/`.
 *
 * `version` is derived from the source bytes, so a retried or redelivered job writes the
 * same keys as its earlier attempt (overwriting, never duplicating), while a new source for
 * the track gets a folder of its own. The temp directory is removed whatever happens.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Logger } from '../../common/index.js';
import type { BlobStorage } from '../../common/ports/index.js';
import type { LoudnessMeasurement, NormalisationMode } from './loudness.js';
import type { AudioMetadata } from './probe.js';
import { type Progress, ProgressReporter, processAudio, type Stage } from './process.js';
import { AudioRejectedError } from './rejection.js';
import type { RenditionFormat } from './renditions.js';
import { type DownloadedSource, deleteKeys, downloadSource, publishOutputs } from './storage.js';

export { LOUDNESS_TARGET, type LoudnessMeasurement, type NormalisationMode } from './loudness.js';
export type { AudioMetadata } from './probe.js';
export { type ProcessedAudio, type Progress, processAudio, type Stage } from './process.js';
export { AudioRejectedError } from './rejection.js';

interface TranscodeInput {
  blobs: BlobStorage;
  trackId: number;
  sourceKey: string;
  /** The sha256 the upload recorded; a stored source that differs is refused. */
  expectedSha256?: string | null;
  maxDurationS: number;
  waveformPoints?: number;
  onProgress?: (progress: Progress) => void;
  signal?: AbortSignal;
  log?: Logger;
  /** Parent of the job's temp directory (the OS temp dir by default). */
  tempDir?: string;
}

interface PublishedRendition {
  format: RenditionFormat;
  codec: 'opus' | 'aac';
  bitrate: number;
  key: string;
  url: string;
}

export interface TranscodeResult {
  version: string;
  source: DownloadedSource;
  metadata: AudioMetadata;
  loudness: LoudnessMeasurement | null;
  normalisation: NormalisationMode;
  /** The gain the renditions got, dB. */
  gainDb: number;
  renditions: PublishedRendition[];
  waveformKey: string;
  coverKey: string | null;
  /** Every key written, in order. */
  keys: string[];
  timingsMs: Partial<Record<Stage | 'download', number>>;
}

export function trackPrefix(trackId: number, version: string): string {
  return `tracks/${trackId}/${version}`;
}

export async function transcodeTrack(input: TranscodeInput): Promise<TranscodeResult> {
  const workDir = await mkdtemp(path.join(input.tempDir ?? tmpdir(), 'veza-transcode-'));
  try {
    const signal = input.signal;
    const withSignal = signal ? { signal } : {};
    const progress = new ProgressReporter(input.onProgress);

    const downloadStarted = performance.now();
    const sourcePath = path.join(workDir, 'source');
    const source = await downloadSource(input.blobs, input.sourceKey, sourcePath, signal);
    const downloadMs = Math.round(performance.now() - downloadStarted);
    if (input.expectedSha256 && input.expectedSha256 !== source.sha256) {
      throw new AudioRejectedError('the stored upload does not match its checksum');
    }

    const processed = await processAudio(
      sourcePath,
      workDir,
      {
        maxDurationS: input.maxDurationS,
        ...(input.waveformPoints ? { waveformPoints: input.waveformPoints } : {}),
        ...(input.log ? { log: input.log } : {}),
        ...withSignal,
      },
      progress,
    );

    const version = source.sha256.slice(0, 16);
    const prefix = trackPrefix(input.trackId, version);
    const publishStarted = performance.now();
    const onPublish = progress.stage('publish');
    const keys = await publishOutputs(input.blobs, prefix, processed.outDir, processed.files, signal);
    onPublish(1);
    const keyOf = (relative: string) => `${prefix}/${relative}`;
    return {
      version,
      source,
      metadata: processed.metadata,
      loudness: processed.loudness,
      normalisation: processed.normalisation,
      gainDb: processed.gainDb,
      renditions: processed.renditions.map((rendition) => ({
        format: rendition.format,
        codec: rendition.codec,
        bitrate: rendition.bitrate,
        key: keyOf(rendition.path),
        url: input.blobs.publicUrl(keyOf(rendition.path)),
      })),
      waveformKey: keyOf(processed.waveform.path),
      coverKey: processed.cover ? keyOf(processed.cover.path) : null,
      keys,
      timingsMs: {
        download: downloadMs,
        ...processed.timingsMs,
        publish: Math.round(performance.now() - publishStarted),
      },
    };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

/** Removes what a published result wrote (a track deleted meanwhile, a final failure). */
export async function unpublish(blobs: BlobStorage, result: Pick<TranscodeResult, 'keys'>): Promise<void> {
  await deleteKeys(blobs, result.keys);
}
