/**
 * Uploaded tracks over REST: GET /tracks/:id and GET /tracks (the caller's own), thin
 * translations to StreamService.GetTrack and ListTracks.
 *
 * Visibility is the control plane's rule: the owner (and moderators) see a track in every
 * state; anyone else sees it only once it is ready and public, and gets 404 otherwise, so
 * private tracks do not leak. Media URLs point at /media/tracks/<id>/<version>/..., where
 * the version is derived from the source's sha256: unguessable, and immutable once written.
 */

import { InvalidArgumentError } from '../../../common/contracts/index.js';
import type { Track } from '../../../proto/gen/veza/stream/stream.js';
import type { EdgeRequest } from '../context.js';
import { json } from '../reply.js';
import type { RouteRegistrar } from '../server.js';
import { callContext, type RouteDeps, requireBearer } from './shared.js';

export interface TrackJson {
  id: number;
  owner_id: number;
  title: string;
  description: string;
  genre: string;
  /** uploading (bytes still missing), uploaded, processing, ready or failed. */
  status: string;
  failure_reason: string | null;
  /** Processing progress in percent. */
  progress: number;
  /** Seconds, once measured. */
  duration: number | null;
  format: string | null;
  codec: string | null;
  bitrate: number | null;
  sample_rate: number | null;
  channels: number | null;
  renditions: { format: string; codec: string; bitrate: number; url: string }[];
  waveform_url: string | null;
  cover_url: string | null;
  hls_url: string | null;
  is_public: boolean;
  checksum: string | null;
  /** While bytes are missing: how many arrived, of how many, and when the upload expires. */
  upload: { offset: number; length: number | null; expires_at: string | null } | null;
  created_at: string | null;
  updated_at: string | null;
}

const orNull = <T>(value: T, empty: T): T | null => (value === empty ? null : value);

/** A reply without its track is a control-plane bug; it surfaces as a 500. */
export function presentTrack(track: Track | undefined): TrackJson {
  if (!track) throw new Error('control plane replied without track');
  const uploading = track.status === 'uploading';
  return {
    id: track.trackId,
    owner_id: track.ownerId,
    title: track.title,
    description: track.description,
    genre: track.genre,
    status: track.status,
    failure_reason: orNull(track.failureReason, ''),
    progress: track.progress,
    duration: orNull(track.duration, 0),
    format: orNull(track.fileFormat, ''),
    codec: orNull(track.codec, ''),
    bitrate: orNull(track.bitrate, 0),
    sample_rate: orNull(track.sampleRate, 0),
    channels: orNull(track.channels, 0),
    renditions: track.renditions.map(({ format, codec, bitrate, url }) => ({ format, codec, bitrate, url })),
    waveform_url: orNull(track.waveformUrl, ''),
    cover_url: orNull(track.coverUrl, ''),
    hls_url: orNull(track.hlsUrl, ''),
    is_public: track.isPublic,
    checksum: orNull(track.checksum, ''),
    upload: uploading
      ? {
          offset: track.bytesReceived,
          length: orNull(track.uploadLength, 0),
          expires_at: track.uploadExpiresAt ? track.uploadExpiresAt.toISOString() : null,
        }
      : null,
    created_at: track.createdAt ? track.createdAt.toISOString() : null,
    updated_at: track.updatedAt ? track.updatedAt.toISOString() : null,
  };
}

const NO_STORE = { 'cache-control': 'no-store' };

export function trackIdParam(request: EdgeRequest): number {
  const raw = request.params.id ?? '';
  const id = Number(raw);
  if (!/^[1-9]\d*$/.test(raw) || !Number.isSafeInteger(id)) {
    throw new InvalidArgumentError(`invalid path parameter "id": "${raw}" is not a track id`, 'id');
  }
  return id;
}

function integerQuery(request: EdgeRequest, name: string, min: number, max: number): number {
  const raw = request.query.get(name);
  if (raw === null) return 0;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    throw new InvalidArgumentError(
      `invalid query parameter "${name}": "${raw}" is not a number from ${min} to ${max}`,
      name,
    );
  }
  return value;
}

export function registerTrackRoutes(routes: RouteRegistrar, deps: Pick<RouteDeps, 'controlPlane'>): void {
  const stream = deps.controlPlane.stream;

  routes.route('GET', '/tracks/:id', async (request) => {
    const token = request.header('authorization') ? requireBearer(request) : undefined;
    const trackId = trackIdParam(request);
    const response = await stream.getTrack({ trackId }, callContext(request, token));
    return json({ track: presentTrack(response.track) }, 200, NO_STORE);
  });

  routes.route('GET', '/tracks', async (request) => {
    const token = requireBearer(request);
    const limit = integerQuery(request, 'limit', 1, 100);
    const beforeId = integerQuery(request, 'before', 1, Number.MAX_SAFE_INTEGER);
    const response = await stream.listTracks({ limit, beforeId }, callContext(request, token));
    const tracks = response.tracks.map(presentTrack);
    const last = tracks.at(-1);
    return json(
      { tracks, next_before: last && tracks.length === (limit || 50) ? last.id : null },
      200,
      NO_STORE,
    );
  });
}
