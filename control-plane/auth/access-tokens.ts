/**
 * Issues access tokens in the one format of common/access-token.ts, and verifies a
 * presented token the way every protected call does: signature and claims first, then
 * the session must still be open in the SessionStore (so a revocation applies at once).
 */
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { UnauthenticatedError } from '../../common/contracts/index.js';
import {
  TOKEN_ALGORITHM,
  TOKEN_AUDIENCE,
  TOKEN_ISSUER,
  type UserRole,
  type VerifiedAccessToken,
  verifyAccessToken,
} from '../../common/index.js';
import { isSessionActive, type SessionStore } from '../../common/ports/index.js';
import type { AuthenticatedUser } from '../grpc/index.js';
import type { SigningKeys } from './signing-keys.js';

export interface AccessTokenSubject {
  userId: number;
  sessionId: string;
  roles: readonly UserRole[];
  email: string;
  username: string;
}

export interface IssuedAccessToken {
  token: string;
  expiresAt: Date;
  /** Seconds until expiry, as AuthenticateResponse.expires_in. */
  expiresIn: number;
}

export async function issueAccessToken(
  keys: SigningKeys,
  subject: AccessTokenSubject,
  ttlS: number,
  now = new Date(),
): Promise<IssuedAccessToken> {
  const issuedAt = Math.floor(now.getTime() / 1000);
  const expiresAt = issuedAt + ttlS;
  const token = await new SignJWT({
    sid: subject.sessionId,
    roles: [...subject.roles],
    email: subject.email,
    username: subject.username,
    typ: 'access',
  })
    .setProtectedHeader({ alg: TOKEN_ALGORITHM, kid: keys.kid, typ: 'JWT' })
    .setSubject(String(subject.userId))
    .setJti(randomUUID())
    .setIssuer(TOKEN_ISSUER)
    .setAudience(TOKEN_AUDIENCE)
    .setIssuedAt(issuedAt)
    .setExpirationTime(expiresAt)
    .sign(keys.privateKey);
  return { token, expiresAt: new Date(expiresAt * 1000), expiresIn: ttlS };
}

/** Verifies signature and claims, and that the token's session is open. */
export async function verifyUserToken(
  keys: SigningKeys,
  sessions: SessionStore,
  token: string,
): Promise<VerifiedAccessToken> {
  const verified = await verifyAccessToken(token, keys.getKey);
  if (verified.claims.typ !== 'access')
    throw new UnauthenticatedError('invalid token: not a user access token');
  const session = await sessions.get(verified.sessionId);
  if (!session || session.userId !== verified.userId)
    throw new UnauthenticatedError('invalid token: unknown session');
  if (session.revokedAt) throw new UnauthenticatedError('invalid token: session revoked');
  if (!isSessionActive(session)) throw new UnauthenticatedError('invalid token: session expired');
  return verified;
}

/** The TokenVerifier the gRPC layer runs for `jwt` methods. */
export function createTokenVerifier(keys: SigningKeys, sessions: SessionStore) {
  return async (token: string): Promise<AuthenticatedUser> => {
    const { userId, sessionId, claims, expiresAt } = await verifyUserToken(keys, sessions, token);
    return {
      userId,
      sessionId,
      roles: claims.roles,
      email: claims.email,
      username: claims.username,
      expiresAt,
    };
  };
}
