/**
 * GET /media/<key>: objects of the BlobStorage (avatars today, uploads later), with
 * Range support so players can seek. Bytes are streamed, never held whole in memory.
 */
import { Readable } from 'node:stream';
import { NotFoundError } from '../../../common/contracts/index.js';
import { assertBlobKey } from '../../../common/ports/index.js';
import { parseRange } from '../range.js';
import { HttpStatusError } from '../reply.js';
import type { RouteRegistrar } from '../server.js';
import type { RouteDeps } from './shared.js';

/**
 * Avatar keys are content-addressed (a new image gets a new key), and so are track outputs
 * (`tracks/<id>/<version>/...`, the version derived from the source bytes): they never change.
 */
function cacheControlFor(key: string): string {
  return key.startsWith('avatars/') || key.startsWith('tracks/')
    ? 'public, max-age=31536000, immutable'
    : 'public, max-age=60';
}

/** Uploaded originals (`uploads/<trackId>/source`) have guessable keys and are never served: only the renditions are. */
const PRIVATE_PREFIXES = ['uploads/'];

export function registerMediaRoutes(routes: RouteRegistrar, deps: Pick<RouteDeps, 'blobs'>): void {
  const { blobs } = deps;
  routes.route('GET', '/media/*', async (request) => {
    const key = request.params['*'] ?? '';
    try {
      assertBlobKey(key);
    } catch {
      throw new NotFoundError(`no media at ${request.path}`);
    }
    if (PRIVATE_PREFIXES.some((prefix) => key.startsWith(prefix))) {
      throw new NotFoundError(`no media at ${request.path}`);
    }
    const info = await blobs.stat(key);
    if (!info) throw new NotFoundError(`no media at ${request.path}`);
    const headers: Record<string, string> = {
      'content-type': info.contentType,
      'accept-ranges': 'bytes',
      'cache-control': cacheControlFor(key),
      // User-supplied bytes: never let a browser sniff them into something executable.
      'x-content-type-options': 'nosniff',
      'content-security-policy': "default-src 'none'; sandbox",
    };
    const range = parseRange(request.header('range'), info.size);
    if (range.kind === 'unsatisfiable') {
      throw new HttpStatusError(
        'invalid_argument',
        `range not satisfiable: the object has ${info.size} bytes`,
        416,
        {
          'content-range': `bytes */${info.size}`,
        },
      );
    }
    const head = request.method === 'HEAD';
    if (range.kind === 'full') {
      const stream = head ? Readable.from([]) : await blobs.get(key);
      return { status: 200, headers, body: { stream, length: info.size } };
    }
    const stream = head ? Readable.from([]) : await blobs.get(key, { start: range.start, end: range.end });
    return {
      status: 206,
      headers: { ...headers, 'content-range': `bytes ${range.start}-${range.end}/${info.size}` },
      body: { stream, length: range.end - range.start + 1 },
    };
  });
}
