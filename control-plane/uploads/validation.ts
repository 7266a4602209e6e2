/**
 * Input rules of the upload rpcs, checked at the gRPC boundary. Failures are
 * InvalidArgumentErrors naming the field in the proto's snake_case.
 */
import { z } from 'zod';
import { InvalidArgumentError } from '../../common/contracts/index.js';
import { listingTextFields } from '../streams/index.js';
import type { UploadProtocol } from './store.js';

const FILENAME_MAX = 255;
const LIST_DEFAULT_LIMIT = 50;
const LIST_MAX_LIMIT = 100;
/** The JSON in UploadAudioRequest.metadata stays small: it is descriptive, never the audio. */
const METADATA_MAX_BYTES = 4096;

const SHA256_HEX = /^[0-9a-f]{64}$/;
const FORMAT = /^[a-z0-9]{1,16}$/;

const trackId = z
  .number({ error: 'track_id must be a positive integer' })
  .int('track_id must be a positive integer')
  .positive('track_id must be a positive integer');

export const trackIdSchema = z.object({ trackId });

export const listTracksSchema = z.object({
  limit: z
    .number()
    .int('limit must be an integer')
    .min(0, 'limit must not be negative')
    .max(LIST_MAX_LIMIT, `limit must be at most ${LIST_MAX_LIMIT}`)
    .transform((value) => (value === 0 ? LIST_DEFAULT_LIMIT : value)),
  beforeId: z.number().int().min(0, 'before_id must not be negative'),
});

/** What UploadAudioRequest.metadata may carry, as a UTF-8 JSON object. */
const metadataSchema = z.strictObject({
  checksum: z
    .string()
    .transform((value) => value.toLowerCase())
    .pipe(z.string().regex(SHA256_HEX, 'checksum must be the sha256 of the file in hex (64 characters)'))
    .optional(),
  filename: z
    .string()
    .trim()
    .min(1)
    .max(FILENAME_MAX, `filename must be at most ${FILENAME_MAX} characters`)
    .optional(),
  is_public: z.boolean().optional(),
  protocol: z.enum(['tus', 'multipart', 'grpc']).optional(),
});

export const uploadAudioSchema = z.object({
  userId: z.number().int().min(0, 'user_id must not be negative'),
  ...listingTextFields,
  metadata: z.instanceof(Buffer),
  duration: z.number().int().min(0, 'duration must not be negative'),
  fileSize: z.number().int().min(0, 'file_size must not be negative'),
  fileFormat: z
    .string()
    .trim()
    .transform((value) => value.toLowerCase().replace(/^\./, ''))
    .pipe(
      z.union([
        z.literal(''),
        z.string().regex(FORMAT, 'file_format must be a short extension such as "wav"'),
      ]),
    ),
});

interface UploadMetadata {
  checksum: string | null;
  filename: string | null;
  isPublic: boolean;
  protocol: UploadProtocol;
}

export function parseUploadMetadata(bytes: Buffer): UploadMetadata {
  const empty = { checksum: null, filename: null, isPublic: false, protocol: 'grpc' as const };
  if (bytes.length === 0) return empty;
  if (bytes.length > METADATA_MAX_BYTES) {
    throw new InvalidArgumentError(`metadata must be at most ${METADATA_MAX_BYTES} bytes`, 'metadata');
  }
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new InvalidArgumentError(
      'metadata must be a UTF-8 JSON object such as {"checksum": "<sha256 hex>", "filename": "song.wav"}',
      'metadata',
    );
  }
  const parsed = metadataSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? `metadata.${issue.path.join('.')}` : 'metadata';
    const message =
      issue?.code === 'unrecognized_keys'
        ? `unknown metadata field(s): ${issue.keys.join(', ')} (known: checksum, filename, is_public, protocol)`
        : `${where}: ${issue?.message ?? 'invalid'}`;
    throw new InvalidArgumentError(message, 'metadata');
  }
  return {
    checksum: parsed.data.checksum ?? null,
    filename: parsed.data.filename ?? null,
    isPublic: parsed.data.is_public ?? false,
    protocol: parsed.data.protocol ?? 'grpc',
  };
}

/** The declared format, else the filename's extension when it looks like one. */
export function formatOf(declared: string, filename: string | null): string | null {
  if (declared) return declared;
  const extension = filename?.split('.').at(-1)?.toLowerCase() ?? '';
  return filename?.includes('.') && FORMAT.test(extension) ? extension : null;
}

export { parseInput } from '../parse-input.js';

/** A per-request checksum, as tus's Upload-Checksum carries it: "<algorithm> <base64 digest>". */
export interface RequestChecksum {
  algorithm: 'sha1' | 'sha256' | 'md5';
  digest: Buffer;
}

const CHECKSUM_ALGORITHMS = ['sha1', 'sha256', 'md5'] as const;

export function parseRequestChecksum(header: string): RequestChecksum {
  const match = /^\s*([a-z0-9-]+)\s+([A-Za-z0-9+/]+=*)\s*$/.exec(header);
  const algorithm = match?.[1];
  if (!match || !algorithm || !(CHECKSUM_ALGORITHMS as readonly string[]).includes(algorithm)) {
    throw new InvalidArgumentError(
      `upload checksum must be "<algorithm> <base64 digest>" with algorithm ${CHECKSUM_ALGORITHMS.join(', ')}`,
      'upload_checksum',
    );
  }
  return {
    algorithm: algorithm as RequestChecksum['algorithm'],
    digest: Buffer.from(match[2] ?? '', 'base64'),
  };
}
