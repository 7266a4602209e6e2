/**
 * The access-token format, shared by the control plane (which signs) and the edge
 * (which verifies locally against the JWKS, so there is no RPC per WebSocket message).
 *
 * Tokens are EdDSA (Ed25519) JWTs with a `kid` header. Only asymmetric algorithms are
 * accepted; `alg: none` and HMAC tokens fail before any claim is read.
 */
import { type JWTVerifyGetKey, errors as joseErrors, jwtVerify } from 'jose';
import { z } from 'zod';
import { USER_ROLES } from './config.js';
import { UnauthenticatedError } from './contracts/index.js';

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

/** Extracts the token from an `Authorization: Bearer ...` value, naming what is wrong with it. */
export function bearerToken(header: string | undefined): string {
  if (!header) throw new UnauthenticatedError('missing authorization header');
  const match = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(header.trim());
  if (!match?.[1])
    throw new UnauthenticatedError('invalid authorization header format: expected "Bearer <token>"');
  return match[1];
}
