/**
 * POST /stream/upload (the seed's "Upload de Fichier Audio") in two forms.
 *
 * Resumable: the tus 1.0.0 core protocol with the creation, termination, checksum and
 * expiration extensions, implemented on our router (tus server libraries need Node's http
 * request and response, which uWS does not have):
 * - POST /stream/upload with Upload-Length and Upload-Metadata (title, description, genre,
 *   filename, is_public, and checksum = the sha256 hex of the whole file) creates the track
 *   and answers 201 with its Location (/stream/upload/<trackId>) and track id;
 * - HEAD /stream/upload/:id gives Upload-Offset (the bytes stored) and Upload-Length;
 * - PATCH /stream/upload/:id with Upload-Offset and application/offset+octet-stream appends
 *   (an optional Upload-Checksum covers the request's bytes; 460 when they do not match);
 * - DELETE /stream/upload/:id cancels an unfinished upload; OPTIONS describes the server.
 * Small files: one multipart/form-data POST with `file` plus title, description, genre
 * (and optional checksum, is_public) answers 201 with the track.
 *
 * The edge keeps no state: the bytes stream through to the control plane
 * (StreamService.UploadAudioChunks), which stages them, checks limits, quota and checksum,
 * stores the source and queues processing. A request cut off mid-body still commits what
 * arrived, so the client resumes from HEAD's offset.
 */
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { type ServiceError, status } from '@grpc/grpc-js';
import {
  InvalidArgumentError,
  toVezaError,
  UnavailableError,
  type VezaError,
} from '../../../common/contracts/index.js';
import { ERROR_CODE_KEY, fromGrpcError } from '../../../common/index.js';
import type { CallContext, ControlPlaneClient } from '../../../control-plane/client/index.js';
import { AudioChunk, type UploadAudioResponse } from '../../../proto/gen/veza/stream/stream.js';
import type { EdgeRequest } from '../context.js';
import { decodeUtf8 } from '../input.js';
import { errorReply, type HttpReply, HttpStatusError, json } from '../reply.js';
import type { RouteRegistrar } from '../server.js';
import { callContext, type RouteDeps, requireBearer } from './shared.js';
import { presentTrack, trackIdParam } from './tracks.js';

export const TUS_VERSION = '1.0.0';
export const TUS_EXTENSIONS = 'creation,termination,checksum,expiration';
export const TUS_CHECKSUM_ALGORITHMS = 'sha1,sha256,md5';
export const TUS_CONTENT_TYPE = 'application/offset+octet-stream';
/** Above this a single multipart request holds too much in the edge's memory: use tus. */
export const MULTIPART_MAX_BYTES = 32 * 1024 * 1024;
/** Room in a multipart body for the text fields and part headers besides the file. */
const MULTIPART_OVERHEAD_BYTES = 64 * 1024;
/** The slices a buffered file is sent to the control plane in. */
const CHUNK_BYTES = 1024 * 1024;
/** A PATCH may carry hundreds of megabytes over a slow link. */
const APPEND_DEADLINE_MS = 2 * 3600 * 1000;
const METADATA_MAX_BYTES = 8 * 1024;

const NO_STORE = { 'cache-control': 'no-store' };
const TUS = { 'tus-resumable': TUS_VERSION };

/** Statuses tus gives meaning to, for errors whose default status differs. */
function tusReply(error: unknown, request: EdgeRequest): HttpReply {
  const veza = toVezaError(error);
  const reply = errorReply(veza, request.log);
  if (veza.details.field === 'upload_checksum' && veza.code === 'invalid_argument') reply.status = 460;
  reply.headers = { ...reply.headers, ...TUS };
  return reply;
}

/** Every tus request but OPTIONS names the protocol version (tus 1.0.0, "Tus-Resumable"). */
function requireTus(request: EdgeRequest): void {
  const version = request.header('tus-resumable');
  if (version !== TUS_VERSION) {
    throw new HttpStatusError(
      'failed_precondition',
      version
        ? `unsupported Tus-Resumable version "${version}": this server speaks ${TUS_VERSION}`
        : `missing Tus-Resumable header: this server speaks tus ${TUS_VERSION}`,
      412,
      { 'tus-version': TUS_VERSION },
    );
  }
}

function integerHeader(request: EdgeRequest, name: string): number | null {
  const raw = request.header(name);
  if (raw === '') return null;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value)) {
    throw new InvalidArgumentError(
      `invalid ${name} header "${raw.slice(0, 40)}": expected a non-negative integer`,
      name,
    );
  }
  return value;
}

/** tus Upload-Metadata: `key base64value` pairs separated by commas (the value may be absent). */
export function parseUploadMetadata(header: string): Record<string, string> {
  if (header.length > METADATA_MAX_BYTES) {
    throw new InvalidArgumentError(
      `Upload-Metadata is longer than ${METADATA_MAX_BYTES} bytes`,
      'upload-metadata',
    );
  }
  const metadata: Record<string, string> = {};
  for (const pair of header.split(',')) {
    const trimmed = pair.trim();
    if (trimmed === '') continue;
    const [key = '', value = '', ...rest] = trimmed.split(/\s+/);
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(key) || rest.length > 0 || !/^[A-Za-z0-9+/]*=*$/.test(value)) {
      throw new InvalidArgumentError(
        `malformed Upload-Metadata entry "${trimmed.slice(0, 80)}": expected "<key> <base64 value>"`,
        'upload-metadata',
      );
    }
    if (key in metadata)
      throw new InvalidArgumentError(`Upload-Metadata repeats "${key}"`, 'upload-metadata');
    metadata[key] = decodeUtf8(Buffer.from(value, 'base64'), `Upload-Metadata "${key}"`);
  }
  return metadata;
}

interface UploadFields {
  title: string;
  description: string;
  genre: string;
  filename: string | null;
  checksum: string | null;
  isPublic: boolean;
}

/** The descriptive fields shared by tus metadata and multipart forms; unknown keys are ignored (clients add their own). */
function uploadFields(values: Record<string, string>, where: string): UploadFields {
  const filename = values.filename?.trim() || values.name?.trim() || null;
  // A title is required; a file's name (without its extension) stands in for a missing one.
  const title = values.title?.trim() || filename?.replace(/\.[A-Za-z0-9]{1,16}$/, '') || '';
  if (!title) throw new InvalidArgumentError(`missing field "title" in ${where}`, 'title');
  const isPublic = values.is_public?.trim().toLowerCase();
  if (isPublic !== undefined && !['true', 'false', '1', '0', ''].includes(isPublic)) {
    throw new InvalidArgumentError(
      `invalid field "is_public" in ${where}: expected true or false`,
      'is_public',
    );
  }
  return {
    title,
    description: values.description ?? '',
    genre: values.genre ?? '',
    filename,
    checksum: values.checksum?.trim() || null,
    isPublic: isPublic === 'true' || isPublic === '1',
  };
}

function uploadMetadataJson(fields: UploadFields, protocol: 'tus' | 'multipart'): Buffer {
  return Buffer.from(
    JSON.stringify({
      protocol,
      is_public: fields.isPublic,
      ...(fields.filename ? { filename: fields.filename } : {}),
      ...(fields.checksum ? { checksum: fields.checksum } : {}),
    }),
  );
}

function grpcFailure(error: ServiceError): VezaError {
  const fromService = error.metadata?.get(ERROR_CODE_KEY).length > 0;
  if (!fromService && (error.code === status.UNAVAILABLE || error.code === status.DEADLINE_EXCEEDED)) {
    return new UnavailableError('the control plane is unavailable', { cause: error });
  }
  return fromGrpcError(error);
}

/**
 * Streams `source` to UploadAudioChunks, the first chunk carrying the track and offset.
 * When `source` fails (client gone, body over its limit) the call is still half-closed, so
 * what was sent is committed; the source's error is rethrown after the call answered.
 */
export async function sendChunks(
  controlPlane: ControlPlaneClient,
  context: CallContext,
  upload: { trackId: number; offset: number; checksum?: string },
  source: Readable,
): Promise<UploadAudioResponse> {
  const metadata = controlPlane.metadataFor(context);
  if (upload.checksum) metadata.set('upload-checksum', upload.checksum);
  let call!: ReturnType<ControlPlaneClient['raw']['stream']['uploadAudioChunks']>;
  const answered = new Promise<UploadAudioResponse>((resolve, reject) => {
    call = controlPlane.raw.stream.uploadAudioChunks(
      metadata,
      { deadline: Date.now() + APPEND_DEADLINE_MS },
      (error, response) => {
        if (error) {
          // Nothing more will be accepted: stop reading the client's body.
          source.destroy();
          reject(grpcFailure(error));
        } else resolve(response);
      },
    );
  });
  // Observed here so a failure while the body is still being read is not unhandled.
  const settled = answered.then(
    () => undefined,
    () => undefined,
  );
  let index = 0;
  const write = async (data: Buffer) => {
    const chunk = AudioChunk.fromPartial({
      streamId: upload.trackId,
      chunkIndex: index,
      audioData: data,
      offset: index === 0 ? upload.offset : 0,
    });
    index += 1;
    if (!call.write(chunk)) await Promise.race([once(call, 'drain'), settled]);
  };
  let sourceError: unknown = null;
  try {
    for await (const piece of source) {
      for (let offset = 0; offset < piece.length; offset += CHUNK_BYTES) {
        await write(piece.subarray(offset, offset + CHUNK_BYTES));
      }
    }
  } catch (error) {
    sourceError = error;
  }
  // An empty request still names its track and offset (a 0-byte PATCH may finish an upload).
  if (index === 0 && !sourceError) await write(Buffer.alloc(0));
  call.end();
  const response = await answered;
  if (sourceError) throw sourceError;
  return response;
}

export function registerUploadRoutes(
  routes: RouteRegistrar,
  deps: Pick<RouteDeps, 'config' | 'controlPlane'>,
): void {
  const { config, controlPlane } = deps;
  const stream = controlPlane.stream;
  const uploadUrl = (trackId: number) => `${config.publicUrl}/stream/upload/${trackId}`;
  const multipartLimit = Math.min(config.UPLOAD_MAX_BYTES, MULTIPART_MAX_BYTES) + MULTIPART_OVERHEAD_BYTES;
  const expiresHeader = (date: Date | undefined): Record<string, string> =>
    date ? { 'upload-expires': date.toUTCString() } : {};

  /** Runs a tus handler; errors get tus's statuses and headers. */
  const tus =
    (handler: (request: EdgeRequest) => Promise<HttpReply>) =>
    async (request: EdgeRequest): Promise<HttpReply> => {
      try {
        requireTus(request);
        return await handler(request);
      } catch (error) {
        return tusReply(error, request);
      }
    };

  routes.route('OPTIONS', '/stream/upload', () => ({
    status: 204,
    headers: {
      ...TUS,
      'tus-version': TUS_VERSION,
      'tus-extension': TUS_EXTENSIONS,
      'tus-max-size': String(config.UPLOAD_MAX_BYTES),
      'tus-checksum-algorithm': TUS_CHECKSUM_ALGORITHMS,
    },
  }));

  const createTus = tus(async (request) => {
    const token = requireBearer(request);
    if (request.header('upload-defer-length')) {
      throw new InvalidArgumentError(
        'Upload-Defer-Length is not supported: send Upload-Length',
        'upload-length',
      );
    }
    const length = integerHeader(request, 'upload-length');
    if (length === null) throw new InvalidArgumentError('missing Upload-Length header', 'upload-length');
    if (length === 0) throw new InvalidArgumentError('the file is empty', 'file');
    const fields = uploadFields(parseUploadMetadata(request.header('upload-metadata')), 'Upload-Metadata');
    const response = await stream.uploadAudio(
      {
        userId: 0,
        title: fields.title,
        description: fields.description,
        genre: fields.genre,
        metadata: uploadMetadataJson(fields, 'tus'),
        duration: 0,
        fileSize: length,
        fileFormat: '',
      },
      callContext(request, token),
    );
    const track = presentTrack(response.track);
    return json({ track_id: track.id, upload_url: uploadUrl(track.id), track }, 201, {
      ...NO_STORE,
      ...TUS,
      location: uploadUrl(track.id),
      ...expiresHeader(response.track?.uploadExpiresAt),
    });
  });

  routes.route(
    'POST',
    '/stream/upload',
    async (request) => {
      if (request.bodyKind !== 'multipart') return createTus(request);
      const token = requireBearer(request);
      return uploadMultipart(request, token);
    },
    { body: { multipart: multipartLimit, optional: true } },
  );

  async function uploadMultipart(request: EdgeRequest, token: string): Promise<HttpReply> {
    const values: Record<string, string> = {};
    let file: { data: Buffer; filename?: string } | null = null;
    const seen = new Set<string>();
    for (const part of request.multipart()) {
      if (seen.has(part.name))
        throw new InvalidArgumentError(`field "${part.name}" appears more than once`, part.name);
      seen.add(part.name);
      if (part.name === 'file') {
        file = { data: part.data, ...(part.filename ? { filename: part.filename } : {}) };
        continue;
      }
      if (part.filename !== undefined) {
        throw new InvalidArgumentError(`field "${part.name}" must be a text field, not a file`, part.name);
      }
      values[part.name] = decodeUtf8(part.data, `field "${part.name}"`);
    }
    if (!file) throw new InvalidArgumentError('missing field "file" in form data', 'file');
    if (file.data.length === 0) throw new InvalidArgumentError('the file is empty', 'file');
    const fields = uploadFields(
      { ...(file.filename ? { filename: file.filename } : {}), ...values },
      'form data',
    );
    const context = callContext(request, token);
    const created = await stream.uploadAudio(
      {
        userId: 0,
        title: fields.title,
        description: fields.description,
        genre: fields.genre,
        metadata: uploadMetadataJson(fields, 'multipart'),
        duration: 0,
        fileSize: file.data.length,
        fileFormat: '',
      },
      context,
    );
    try {
      const done = await sendChunks(
        controlPlane,
        context,
        { trackId: created.trackId, offset: 0 },
        Readable.from([file.data]),
      );
      return json({ track_id: done.trackId, track: presentTrack(done.track) }, 201, NO_STORE);
    } catch (error) {
      // One request is the whole upload: an unfinished one must not linger (a refused one is already failed).
      await stream
        .cancelUpload({ trackId: created.trackId }, { ...context, signal: AbortSignal.timeout(5_000) })
        .catch(() => undefined);
      throw error;
    }
  }

  routes.route(
    'HEAD',
    '/stream/upload/:id',
    tus(async (request) => {
      const token = requireBearer(request);
      const trackId = trackIdParam(request);
      const { track } = await stream.getTrack({ trackId }, callContext(request, token));
      if (!track) throw new Error('control plane replied without track');
      if (track.status === 'failed' && track.bytesReceived === 0) {
        return {
          status: 410,
          headers: { ...NO_STORE, ...TUS, 'upload-failure': encodeURIComponent(track.failureReason) },
        };
      }
      return {
        status: 200,
        headers: {
          ...NO_STORE,
          ...TUS,
          'upload-offset': String(track.bytesReceived),
          ...(track.uploadLength ? { 'upload-length': String(track.uploadLength) } : {}),
          ...expiresHeader(track.uploadExpiresAt),
        },
      };
    }),
  );

  routes.route(
    'PATCH',
    '/stream/upload/:id',
    tus(async (request) => {
      const token = requireBearer(request);
      const trackId = trackIdParam(request);
      if (request.bodyKind !== 'none' && request.bodyKind !== 'stream') {
        throw new InvalidArgumentError(`a PATCH body must be ${TUS_CONTENT_TYPE}`);
      }
      const offset = integerHeader(request, 'upload-offset');
      if (offset === null) throw new InvalidArgumentError('missing Upload-Offset header', 'upload-offset');
      const checksum = request.header('upload-checksum');
      // The client's abort must not cancel the call: what arrived is committed, then HEAD resumes from it.
      const context = { ...callContext(request, token), signal: undefined };
      const response = await sendChunks(
        controlPlane,
        context,
        { trackId, offset, ...(checksum ? { checksum } : {}) },
        request.bodyStream(),
      );
      const track = response.track;
      return {
        status: 204,
        headers: {
          ...NO_STORE,
          ...TUS,
          'upload-offset': String(track?.bytesReceived ?? 0),
          ...expiresHeader(track?.uploadExpiresAt),
          ...(track ? { 'x-track-status': track.status } : {}),
        },
      };
    }),
    { body: { stream: { mediaTypes: [TUS_CONTENT_TYPE], limit: config.UPLOAD_MAX_BYTES } } },
  );

  routes.route(
    'DELETE',
    '/stream/upload/:id',
    tus(async (request) => {
      const token = requireBearer(request);
      const trackId = trackIdParam(request);
      await stream.cancelUpload({ trackId }, callContext(request, token));
      return { status: 204, headers: { ...NO_STORE, ...TUS } };
    }),
  );
}
