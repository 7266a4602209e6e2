/**
 * The access-token format, shared by the control plane (which signs) and the edge
 * (which verifies locally against the JWKS, so there is no RPC per WebSocket message),
 * and what both need to answer token checks from memory: a bounded map, the verified-token
 * cache, and a token-cache holder that follows the invalidations on the bus and acknowledges
 * them (contracts/token-caches.ts; the revoking side is control-plane/auth/invalidations.ts).
 *
 * Tokens are EdDSA (Ed25519) JWTs with a `kid` header. Only asymmetric algorithms are
 * accepted; `alg: none` and HMAC tokens fail before any claim is read.
 */
import { type JWTVerifyGetKey, errors as joseErrors, jwtVerify } from 'jose';
import { z } from 'zod';
import { USER_ROLES } from './config.js';
import {
  ALL_INVALIDATIONS,
  type Invalidation,
  type InvalidationAck,
  parseInvalidation,
  TOKEN_CACHE_GROUPS,
  type TokenCacheRole,
  UnauthenticatedError,
} from './contracts/index.js';
import type { Logger } from './log.js';
import type { EventBus } from './ports/index.js';
import { announcePresence, newBootId } from './presence.js';

export const TOKEN_ISSUER = 'veza-live';
export const TOKEN_AUDIENCE = 'veza-live';
export const TOKEN_ALGORITHM = 'EdDSA';

const claimsSchema = z.object({
  sub: z.string().regex(/^\d+$/),
  sid: z.string().uuid(),
  jti: z.string().min(8),
  roles: z.array(z.enum(USER_ROLES)),
  email: z.string(),
  username: z.string(),
  exp: z.number().int(),
  iat: z.number().int(),
  /** "access" for a user; "listener" for an anonymous listener token scoped to one stream. */
  typ: z.enum(['access', 'listener']).default('access'),
  /** For listener tokens: the stream they may listen to. */
  stream_id: z.number().int().positive().optional(),
});

export type AccessTokenClaims = z.infer<typeof claimsSchema>;

export interface VerifiedAccessToken {
  userId: number;
  sessionId: string;
  claims: AccessTokenClaims;
  expiresAt: Date;
}

/** Verifies signature, issuer, audience, expiry and claim shape; every failure is an UnauthenticatedError. */
export async function verifyAccessToken(
  token: string,
  getKey: JWTVerifyGetKey,
): Promise<VerifiedAccessToken> {
  if (token?.split('.').length !== 3) throw new UnauthenticatedError('invalid token: not a JWT');
  let payload: unknown;
  try {
    ({ payload } = await jwtVerify(token, getKey, {
      issuer: TOKEN_ISSUER,
      audience: TOKEN_AUDIENCE,
      algorithms: [TOKEN_ALGORITHM],
    }));
  } catch (error) {
    if (error instanceof joseErrors.JWTExpired) throw new UnauthenticatedError('invalid token: expired');
    if (error instanceof joseErrors.JOSEAlgNotAllowed)
      throw new UnauthenticatedError('invalid token: algorithm not allowed');
    if (error instanceof joseErrors.JWKSNoMatchingKey)
      throw new UnauthenticatedError('invalid token: signed by an unknown key');
    if (error instanceof joseErrors.JWSSignatureVerificationFailed)
      throw new UnauthenticatedError('invalid token: bad signature');
    if (error instanceof joseErrors.JWTClaimValidationFailed)
      throw new UnauthenticatedError(`invalid token: ${error.claim} claim rejected`);
    throw new UnauthenticatedError('invalid token');
  }
  const parsed = claimsSchema.safeParse(payload);
  if (!parsed.success) throw new UnauthenticatedError('invalid token: malformed claims');
  const claims = parsed.data;
  return {
    userId: Number(claims.sub),
    sessionId: claims.sid,
    claims,
    expiresAt: new Date(claims.exp * 1000),
  };
}

/**
 * A Map bounded to `maxEntries` that drops a least recently used entry: what the token caches
 * hold (verified tokens, login sessions, users) must not grow with the number of users seen.
 * Recency is approximated by a second chance (CLOCK): a hit only marks its entry, and the
 * eviction moves marked entries from the old end to the young end (unmarking them) until it
 * finds an unmarked one. A hit then costs one lookup, not a delete and a re-insert, which the
 * profile of a cached ValidateToken showed; eviction stays amortised O(1).
 */
export class LruMap<K, V> {
  readonly #entries = new Map<K, { value: V; used: boolean }>();
  readonly maxEntries: number;

  constructor(maxEntries: number) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1)
      throw new Error('maxEntries must be a positive integer');
    this.maxEntries = maxEntries;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(key: K): V | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    entry.used = true;
    return entry.value;
  }

  set(key: K, value: V): void {
    const entry = this.#entries.get(key);
    if (entry) {
      entry.value = value;
      entry.used = true;
      return;
    }
    // Room first, so the newcomer is not the one the round finds unmarked.
    if (this.#entries.size >= this.maxEntries) this.#evict();
    this.#entries.set(key, { value, used: false });
  }

  delete(key: K): void {
    this.#entries.delete(key);
  }

  clear(): void {
    this.#entries.clear();
  }

  #evict(): void {
    // Map iteration is in insertion order and also visits what is re-inserted meanwhile, so this
    // ends at the latest after one round (everything unmarked by then).
    for (const [key, entry] of this.#entries) {
      this.#entries.delete(key);
      if (!entry.used) return;
      entry.used = false;
      this.#entries.set(key, entry);
    }
  }
}

/** How many verified token strings a process keeps by default (a token and its claims: about 1.5 kB each). */
export const DEFAULT_VERIFIED_TOKENS = 10_000;

/**
 * verifyAccessToken with the result kept per token string until the token expires: the same
 * string, once verified, stays verified (its signature cannot change), so a hot token costs a
 * map lookup instead of an Ed25519 verification. Only successes are kept; a key withdrawn from
 * the key set does not un-verify a cached token before it expires. Results are shared: do not
 * mutate them.
 */
export class VerifiedTokens {
  readonly #getKey: JWTVerifyGetKey;
  /**
   * By signature: hashing its 86 characters instead of the whole token's hundreds is most of a
   * hit's cost. An entry counts only for the exact string it was verified for.
   */
  readonly #verified: LruMap<string, { token: string; result: VerifiedAccessToken }>;

  constructor(getKey: JWTVerifyGetKey, maxEntries = DEFAULT_VERIFIED_TOKENS) {
    this.#getKey = getKey;
    this.#verified = new LruMap(maxEntries);
  }

  /** The kept verification of `token` while it is unexpired, without waiting; undefined otherwise. */
  peek(token: string): VerifiedAccessToken | undefined {
    const hit = this.#hit(token);
    // jose's own rule: expired once `exp` is at or before the current second.
    if (hit && hit.claims.exp > Math.floor(Date.now() / 1000)) return hit;
    return undefined;
  }

  async verify(token: string): Promise<VerifiedAccessToken> {
    const hit = this.#hit(token);
    if (hit) {
      if (hit.claims.exp > Math.floor(Date.now() / 1000)) return hit;
      this.#verified.delete(signatureOf(token));
      throw new UnauthenticatedError('invalid token: expired');
    }
    const result = await verifyAccessToken(token, this.#getKey);
    this.#verified.set(signatureOf(token), { token, result });
    return result;
  }

  #hit(token: string): VerifiedAccessToken | undefined {
    const entry = this.#verified.get(signatureOf(token));
    return entry?.token === token ? entry.result : undefined;
  }
}

/** The signature segment of a JWT (the whole string when it has no dot: it then never verifies). */
const signatureOf = (token: string): string => token.slice(token.lastIndexOf('.') + 1);

export interface TokenCacheHolderOptions {
  bus: EventBus;
  log: Logger;
  role: TokenCacheRole;
  /** The process's node id (config.nodeId, or the edge's id). */
  nodeId: string;
  /** Default: a new one. */
  bootId?: string;
  /** The presence heartbeat interval (config.PRESENCE_HEARTBEAT_MS). */
  intervalMs: number;
  /**
   * Applies an invalidation to the holder's cache (and, on an edge, to its open connections).
   * Synchronous on purpose: the acknowledgement is sent when it returns, and it promises the
   * change is in effect. A throw sends no acknowledgement (the revoker logs the silence).
   */
  apply(invalidation: Invalidation): void;
}

export interface TokenCacheHolder {
  readonly bootId: string;
  /** Resolves once invalidations reach this holder and its first heartbeat is out. */
  readonly ready: Promise<void>;
  /**
   * Whether cached session and user state may be answered from (and stored): only once every
   * control plane has had one heartbeat interval to hear of this holder, so that none of them
   * revokes without waiting for its acknowledgement (control-plane/auth/invalidations.ts).
   * Until then the holder reads through.
   */
  trusted(): boolean;
  /** Says goodbye (revokers stop waiting for it at once), then stops following invalidations. */
  close(): Promise<void>;
}

/**
 * Follows `auth.invalidations.*` for a token cache: applies each one, then acknowledges it on its
 * ack subject; and announces the holder in its role's presence group, once the subscription is
 * active, so a revoker that lists it can count on its answer.
 */
export function holdTokenCache(options: TokenCacheHolderOptions): TokenCacheHolder {
  const { bus, log, nodeId } = options;
  const bootId = options.bootId ?? newBootId();
  const ack: InvalidationAck = { nodeId, bootId };
  let trustedFrom = Number.POSITIVE_INFINITY;
  const subscription = bus.subscribe(ALL_INVALIDATIONS, (payload) => {
    const invalidation = parseInvalidation(payload);
    if (!invalidation) {
      log.warn('ignoring a malformed invalidation');
      return;
    }
    try {
      options.apply(invalidation);
    } catch (error) {
      log.error({ err: error, type: invalidation.type }, 'could not apply an invalidation');
      return;
    }
    if (invalidation.ack) {
      bus.publish(invalidation.ack, ack).catch((error: unknown) => {
        log.warn({ err: error }, 'could not acknowledge an invalidation');
      });
    }
  });
  const presence = announcePresence({
    bus,
    group: TOKEN_CACHE_GROUPS[options.role],
    nodeId,
    bootId,
    intervalMs: options.intervalMs,
    log,
    what: options.role === 'edge' ? 'edge token cache' : 'control-plane token cache',
    after: subscription.ready,
  });
  const ready = presence.ready.then(() => {
    trustedFrom = performance.now() + options.intervalMs;
  });
  return {
    bootId,
    ready,
    trusted: () => performance.now() >= trustedFrom,
    async close() {
      trustedFrom = Number.POSITIVE_INFINITY;
      await presence.goodbye();
      subscription.unsubscribe();
    },
  };
}

/** Extracts the token from an `Authorization: Bearer ...` value, naming what is wrong with it. */
export function bearerToken(header: string | undefined): string {
  if (!header) throw new UnauthenticatedError('missing authorization header');
  const match = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(header.trim());
  if (!match?.[1])
    throw new UnauthenticatedError('invalid authorization header format: expected "Bearer <token>"');
  return match[1];
}
