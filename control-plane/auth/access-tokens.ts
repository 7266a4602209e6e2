/**
 * Issues access tokens in the one format of common/access-token.ts. Presented tokens are
 * checked by ./token-checks.ts: signature and claims first, then the session must still be
 * open.
 */
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { TOKEN_ALGORITHM, TOKEN_AUDIENCE, TOKEN_ISSUER, type UserRole } from '../../common/index.js';
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
