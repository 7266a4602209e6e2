/** A track row as the proto `Track`: storage keys become the URLs browsers fetch (through the edge's /media). */
import type { BlobStorage } from '../../common/ports/index.js';
import type { Track } from '../../proto/gen/veza/stream/stream.js';
import type { TrackRow } from './store.js';

export function toTrack(row: TrackRow, blobs: BlobStorage): Track {
  const renditions = row.renditions.map((rendition) => ({
    format: rendition.format,
    codec: rendition.codec,
    bitrate: rendition.bitrate,
    url: blobs.publicUrl(rendition.key),
  }));
  return {
    trackId: row.id,
    ownerId: row.owner_id,
    title: row.title,
    description: row.description,
    genre: row.genre,
    status: row.uploading ? 'uploading' : row.status,
    failureReason: row.failure_reason ?? '',
    progress: row.progress,
    duration: row.duration_s ?? 0,
    fileFormat: row.file_format ?? '',
    codec: row.codec ?? '',
    bitrate: row.bitrate ?? 0,
    sampleRate: row.sample_rate ?? 0,
    channels: row.channels ?? 0,
    renditions,
    waveformUrl: row.waveform_key ? blobs.publicUrl(row.waveform_key) : '',
    coverUrl: row.cover_key ? blobs.publicUrl(row.cover_key) : '',
    hlsUrl: renditions.find((rendition) => rendition.format === 'hls')?.url ?? '',
    isPublic: row.is_public,
    bytesReceived: row.uploading ? (row.bytes_received ?? 0) : (row.source_size ?? 0),
    uploadLength: row.uploading ? (row.upload_length ?? 0) : (row.source_size ?? 0),
    checksum: (row.uploading ? row.upload_checksum : row.source_checksum) ?? '',
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    uploadExpiresAt: row.upload_expires_at ?? undefined,
    streamId: row.stream_id ?? 0,
  };
}
