/**
 * The seed's JWT and API-key interceptors, as one function the call wrapper runs before
 * a handler. Messages follow the seed so clients see the same text whatever the stack.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';
import { UnauthenticatedError } from '../../common/contracts/index.js';
import { bearerToken } from '../../common/index.js';
import type { AuthenticatedUser, AuthPolicy, TokenVerifier } from './context.js';

export interface ApiKeyMatcher {
  matches(candidate: string): boolean;
}

const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

/**
 * Compares against every key in constant time; hashing first gives equal lengths so
 * neither the key's length nor the position of the first differing byte leaks.
 */
export function createApiKeyMatcher(keys: readonly string[]): ApiKeyMatcher {
  const digests = [...new Set(keys.filter((key) => key.length > 0))].map(digest);
  return {
    matches(candidate) {
      const presented = digest(candidate);
      let found = false;
      for (const key of digests) found = timingSafeEqual(presented, key) || found;
      return found;
    },
  };
}

function single(metadata: Metadata, key: string): string | undefined {
  const value = metadata.get(key)[0];
  if (value === undefined) return undefined;
  return typeof value === 'string' ? value : value.toString('utf8');
}

export interface CallerIdentity {
  user: AuthenticatedUser | null;
  service: boolean;
}

/**
 * The caller of a call under `policy`. Answers at once when nothing needs waiting for (no token,
 * or the verifier held the answer), so a call answered from memory costs no promise here;
 * a refusal is thrown, or rejected when the verifier had to wait.
 */
export function authenticateCaller(
  metadata: Metadata,
  policy: AuthPolicy,
  apiKeys: ApiKeyMatcher,
  verifyToken: TokenVerifier,
): CallerIdentity | Promise<CallerIdentity> {
  const apiKey = single(metadata, 'x-api-key');
  let service = false;
  if (apiKey !== undefined) {
    if (!apiKeys.matches(apiKey)) throw new UnauthenticatedError('invalid API key');
    service = true;
  } else if (policy === 'api-key') {
    throw new UnauthenticatedError('missing API key');
  }

  // A public or service-only method ignores the authorization header: the edge may
  // forward an expired token with a login, which must not make the login fail.
  if (policy === 'public' || policy === 'api-key') return { user: null, service };

  const authorization = single(metadata, 'authorization');
  if (policy === 'public-or-jwt' && authorization === undefined) return { user: null, service };
  if (policy === 'jwt-or-api-key' && service && authorization === undefined) return { user: null, service };
  const user = verifyToken(bearerToken(authorization));
  return user instanceof Promise ? user.then((verified) => ({ user: verified, service })) : { user, service };
}
