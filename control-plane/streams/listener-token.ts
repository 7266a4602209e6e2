/**
 * Listener tokens: access tokens in the format of common/access-token.ts that let an
 * anonymous client listen to one stream. They carry no user (sub "0") and no session
 * (a fresh sid), and `typ: "listener"`, which the control plane's user-token verifier
 * rejects, so a listener token can never act as a user on an rpc.
 */
import { randomUUID, type webcrypto } from 'node:crypto';
import { SignJWT } from 'jose';
import { TOKEN_ALGORITHM, TOKEN_AUDIENCE, TOKEN_ISSUER } from '../../common/index.js';

/** Short, because it only has to last until the WebSocket join; a reconnect fetches a new one. */
export const LISTENER_TOKEN_TTL_S = 300;

/** The part of the auth module's SigningKeys a signer needs. */
export interface TokenSigningKey {
  readonly kid: string;
  readonly privateKey: webcrypto.CryptoKey;
}

export interface IssuedListenerToken {
  token: string;
  expiresIn: number;
  expiresAt: Date;
}

export async function issueListenerToken(
  key: TokenSigningKey,
  streamId: number,
  ttlS = LISTENER_TOKEN_TTL_S,
  now = new Date(),
): Promise<IssuedListenerToken> {
  const issuedAt = Math.floor(now.getTime() / 1000);
  const expiresAt = issuedAt + ttlS;
  const token = await new SignJWT({
    sid: randomUUID(),
    roles: ['listener'],
    email: '',
    username: 'anonymous',
    typ: 'listener',
    stream_id: streamId,
  })
    .setProtectedHeader({ alg: TOKEN_ALGORITHM, kid: key.kid, typ: 'JWT' })
    .setSubject('0')
    .setJti(randomUUID())
    .setIssuer(TOKEN_ISSUER)
    .setAudience(TOKEN_AUDIENCE)
    .setIssuedAt(issuedAt)
    .setExpirationTime(expiresAt)
    .sign(key.privateKey);
  return { token, expiresIn: ttlS, expiresAt: new Date(expiresAt * 1000) };
}
