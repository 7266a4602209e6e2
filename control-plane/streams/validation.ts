/**
 * Input rules of StreamService, checked at the gRPC boundary. Every failure is an
 * InvalidArgumentError naming the field, in the snake_case the REST API and proto use.
 */
import { z } from 'zod';

const TITLE_MAX = 120;
const DESCRIPTION_MAX = 2000;
const GENRE_MAX = 50;
const LIST_DEFAULT_LIMIT = 50;
const LIST_MAX_LIMIT = 100;

const streamId = z
  .number({ error: 'stream_id must be a positive integer' })
  .int('stream_id must be a positive integer')
  .positive('stream_id must be a positive integer');

/** Title, description and genre of anything listed to listeners: live streams and uploaded tracks. */
export const listingTextFields = {
  title: z
    .string()
    .trim()
    .min(1, 'title is required')
    .max(TITLE_MAX, `title must be at most ${TITLE_MAX} characters`),
  description: z
    .string()
    .trim()
    .max(DESCRIPTION_MAX, `description must be at most ${DESCRIPTION_MAX} characters`),
  genre: z.string().trim().max(GENRE_MAX, `genre must be at most ${GENRE_MAX} characters`),
};

export const startStreamSchema = z
  .object({
    ...listingTextFields,
    isPublic: z.boolean(),
    allowAnonymous: z.boolean(),
    // Absent means recorded: recording is on unless the broadcaster turns it off.
    record: z.boolean().default(true),
  })
  .refine((value) => value.isPublic || !value.allowAnonymous, {
    message: 'allow_anonymous needs a public stream (is_public true)',
    path: ['allowAnonymous'],
  });

export const streamIdSchema = z.object({ streamId });

/** Machine-readable, so subscribers of `stream.ended` can branch on it. */
const REASON = /^[a-z][a-z0-9_]{0,63}$/;

export const stopStreamSchema = z.object({
  streamId,
  reason: z
    .string()
    .trim()
    .refine((value) => value === '' || REASON.test(value), {
      message: 'reason must be a short lowercase token such as "broadcaster_disconnected"',
    }),
});

/**
 * Where a ListStreams listing stands (see ListStreamsRequest): the older streams still to list
 * are those with ids below `below` (0 when none are left), and the streams started since the
 * listing began are those with ids above `above` (the highest id listed so far).
 */
interface ListCursor {
  below: number;
  above: number;
}

const PAGE_TOKEN_MAX = 64;
const PAGE_TOKEN = /^v1:(0|[1-9]\d{0,15}):(0|[1-9]\d{0,15})$/;

/** The opaque page_token of a cursor: base64url, so callers do not build or edit one. */
export function encodePageToken(cursor: ListCursor): string {
  return Buffer.from(`v1:${cursor.below}:${cursor.above}`, 'utf8').toString('base64url');
}

function decodePageToken(token: string): ListCursor | null {
  if (token.length > PAGE_TOKEN_MAX || !/^[A-Za-z0-9_-]+$/.test(token)) return null;
  const decoded = Buffer.from(token, 'base64url');
  // Node's decoder skips what it cannot read; only a canonical encoding is a token.
  if (decoded.toString('base64url') !== token) return null;
  const match = PAGE_TOKEN.exec(decoded.toString('utf8'));
  if (!match) return null;
  const below = Number(match[1]);
  const above = Number(match[2]);
  if (!Number.isSafeInteger(below) || !Number.isSafeInteger(above)) return null;
  return { below, above };
}

export const listStreamsSchema = z.object({
  limit: z
    .number()
    .int('limit must be an integer')
    .min(0, 'limit must not be negative')
    .max(LIST_MAX_LIMIT, `limit must be at most ${LIST_MAX_LIMIT}`)
    .transform((value) => (value === 0 ? LIST_DEFAULT_LIMIT : value)),
  /** null for the first page. */
  pageToken: z.string().transform((token, ctx): ListCursor | null => {
    if (token === '') return null;
    const cursor = decodePageToken(token);
    if (!cursor) {
      ctx.addIssue({
        code: 'custom',
        message: 'page_token is not a next_page_token of ListStreams',
      });
      return z.NEVER;
    }
    return cursor;
  }),
  includePrivate: z.boolean(),
});

export const reportListenerCountSchema = z.object({
  streamId,
  listenerCount: z
    .number()
    .int('listener_count must be an integer')
    .min(0, 'listener_count must not be negative'),
});

export { parseInput } from '../parse-input.js';
