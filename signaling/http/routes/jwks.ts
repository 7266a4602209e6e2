/**
 * GET /.well-known/jwks.json: the control plane's public signing keys, so anyone (other
 * edges, third parties) can verify access tokens. Cached for a minute: key rotation
 * keeps the old key published long enough for caches to catch up.
 */
import { z } from 'zod';
import { UnavailableError } from '../../../common/contracts/index.js';
import { noteFallback } from '../../../common/index.js';
import { text } from '../reply.js';
import type { RouteRegistrar } from '../server.js';
import type { RouteDeps } from './shared.js';

export const JWKS_TTL_MS = 60_000;

const jwksSchema = z.object({ keys: z.array(z.looseObject({ kty: z.string() })) });

export function registerJwksRoutes(
  routes: RouteRegistrar,
  deps: Pick<RouteDeps, 'controlPlane' | 'log'>,
): void {
  let cached: { body: string; fetchedAt: number } | null = null;
  let pending: Promise<string> | null = null;

  const fetchJwks = async (requestId: string): Promise<string> => {
    const response = await deps.controlPlane.auth.getJwks({}, { requestId });
    const parsed = jwksSchema.safeParse(JSON.parse(response.jwksJson));
    if (!parsed.success) throw new Error('control plane returned a malformed JWKS');
    // Re-serialised from the parsed value, so nothing but a JSON object reaches clients.
    const body = JSON.stringify(parsed.data);
    cached = { body, fetchedAt: Date.now() };
    return body;
  };

  routes.route('GET', '/.well-known/jwks.json', async (request) => {
    const now = Date.now();
    let body: string;
    if (cached && now - cached.fetchedAt < JWKS_TTL_MS) {
      body = cached.body;
    } else {
      // One refresh at a time; concurrent requests share it. It is not tied to this request's abort.
      pending ??= fetchJwks(request.requestId).finally(() => {
        pending = null;
      });
      try {
        body = await pending;
      } catch (error) {
        if (!cached)
          throw new UnavailableError('signing keys are unavailable: the control plane did not answer');
        request.log.warn({ err: error }, 'serving a stale JWKS: refresh failed');
        noteFallback('control-plane', 'jwks');
        body = cached.body;
      }
    }
    const age = cached ? Math.max(0, Math.floor((Date.now() - cached.fetchedAt) / 1000)) : 0;
    const maxAge = Math.max(0, Math.floor(JWKS_TTL_MS / 1000) - age);
    return text(body, 'application/json; charset=utf-8', 200, {
      'cache-control': `public, max-age=${maxAge}`,
    });
  });
}
