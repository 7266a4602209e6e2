/**
 * The control plane's public keys, held by the edge so access tokens are verified
 * locally (no RPC per connection). Fetched with AuthService.GetJwks on first use and
 * refetched when a token names a key we do not hold (the control plane rotated its key),
 * at most once per `minRefetchMs` so a stream of forged kids cannot hammer the control plane.
 */
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey, errors as joseErrors } from 'jose';
import { z } from 'zod';
import { UnavailableError } from '../../common/contracts/index.js';
import type { Logger } from '../../common/index.js';
import type { ControlPlaneClient } from '../../control-plane/client/index.js';

const jwksSchema = z.object({ keys: z.array(z.looseObject({ kty: z.string() })) });

export interface JwksKeyStoreOptions {
  controlPlane: Pick<ControlPlaneClient, 'auth'>;
  log: Logger;
  /** Minimum time between two fetches triggered by unknown key ids (default 10 s). */
  minRefetchMs?: number;
}

export interface JwksKeyStore {
  /** For `verifyAccessToken(token, getKey)`. */
  getKey: JWTVerifyGetKey;
  /**
   * Loads the keys if none are held yet. Call it before verifying: inside verifyAccessToken a
   * failed fetch would read as a bad token (401) when the truth is "try again later" (503).
   */
  load(): Promise<void>;
}

export function createJwksKeyStore(options: JwksKeyStoreOptions): JwksKeyStore {
  const minRefetchMs = options.minRefetchMs ?? 10_000;
  let local: JWTVerifyGetKey | null = null;
  let fetchedAt = 0;
  let pending: Promise<JWTVerifyGetKey> | null = null;

  const fetchKeys = (): Promise<JWTVerifyGetKey> => {
    // Concurrent upgrades share one fetch.
    pending ??= (async () => {
      try {
        const response = await options.controlPlane.auth.getJwks({});
        const parsed = jwksSchema.safeParse(JSON.parse(response.jwksJson));
        if (!parsed.success) throw new Error('the control plane returned a malformed JWKS');
        local = createLocalJWKSet(parsed.data as JSONWebKeySet);
        fetchedAt = Date.now();
        options.log.debug({ keys: parsed.data.keys.length }, 'fetched the control plane JWKS');
        return local;
      } catch (error) {
        options.log.warn({ err: error }, 'could not fetch the control plane JWKS');
        throw new UnavailableError('token keys are unavailable: the control plane did not answer', {
          cause: error,
        });
      } finally {
        pending = null;
      }
    })();
    return pending;
  };

  const getKey: JWTVerifyGetKey = async (header, token) => {
    const keys = local ?? (await fetchKeys());
    try {
      return await keys(header, token);
    } catch (error) {
      const unknownKid = error instanceof joseErrors.JWKSNoMatchingKey;
      if (!unknownKid || Date.now() - fetchedAt < minRefetchMs) throw error;
      return (await fetchKeys())(header, token);
    }
  };

  return {
    getKey,
    async load() {
      if (!local) await fetchKeys();
    },
  };
}
