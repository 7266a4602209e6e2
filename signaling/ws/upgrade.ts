/**
 * The WebSocket handshake's decision: protocol version first (a wrong version gets a close
 * frame with a reason, which a browser can read), then the token (a bad token gets an HTTP
 * 401 before the upgrade, as for any REST call).
 *
 * The token travels in `?token=` because browsers cannot set headers on a WebSocket. Its
 * signature is verified locally against the control plane's JWKS; an access token's login
 * session must be open, which the edge answers from its token cache or asks the control plane
 * once (token-checks.ts). The token is kept in memory only to call the control plane on the
 * user's behalf while it is valid, and never logged. Its expiry and its login session's
 * revocation are followed on the open connection (token-lifetime.ts).
 */
import { createHash, randomUUID } from 'node:crypto';
import { toVezaError, UnauthenticatedError, type VezaError } from '../../common/contracts/index.js';
import type { UserRole } from '../../common/index.js';
import { PROTOCOL_VERSION, SIGNALING_PATH, SUPPORTED_PROTOCOL_VERSIONS } from '../protocol/index.js';
import type { JwksKeyStore } from './jwks.js';
import type { EdgeTokenChecks } from './token-checks.js';

export interface ConnectionAuth {
  kind: 'user' | 'listener';
  /** 0 for listener tokens (anonymous). */
  userId: number;
  username: string;
  roles: UserRole[];
  /** Listener tokens: the one stream they may listen to (null without a token: any anonymous-friendly stream). */
  streamId: number | null;
  /** The login session the token belongs to (null for listener tokens), to follow its revocation. */
  sessionId: string | null;
  /** Epoch ms. */
  expiresAt: number;
  /** The user's access token (null for listener tokens). Never log it. */
  token: string | null;
  /**
   * Anonymous listeners: their id for analytics, one per listener across its reconnections.
   * With a listener token, derived from the token's session, never the token itself; without a
   * token, a hash of the `listener` id the client library picks once per connection object (a
   * counting aid, not a credential), or a random one.
   */
  anonymousId: string | null;
}

export type UpgradeDecision =
  /** `tokenless`: no token at all (an anonymous listener), counted against its address's budget. */
  | { kind: 'accept'; auth: ConnectionAuth; tokenless: boolean }
  /** Upgrade, then close with CLOSE_CODES.unsupportedVersion and this reason. */
  | { kind: 'reject-version'; reason: string }
  | { kind: 'reject-http'; error: VezaError };

/** What a client may name itself in `listener=` (the client library sends 32 hex characters). */
const LISTENER_ID = /^[A-Za-z0-9_-]{8,64}$/;

/** The identity of a connection opened without a token (`listenerId`: its `listener=` parameter). */
export function anonymousListener(listenerId: string | null = null): ConnectionAuth {
  const id = listenerId !== null && LISTENER_ID.test(listenerId) ? listenerId : randomUUID();
  return {
    kind: 'listener',
    userId: 0,
    username: 'anonymous',
    roles: [],
    streamId: null,
    sessionId: null,
    expiresAt: Number.POSITIVE_INFINITY,
    token: null,
    anonymousId: createHash('sha256').update(`anonymous:${id}`).digest('hex'),
  };
}

export async function decideUpgrade(
  query: string,
  keys: JwksKeyStore,
  checks: Pick<EdgeTokenChecks, 'verify' | 'current'>,
): Promise<UpgradeDecision> {
  const params = new URLSearchParams(query);
  const version = params.get('v');
  if (version === null) {
    return {
      kind: 'reject-version',
      reason: `missing protocol version: connect to ${SIGNALING_PATH}?v=${PROTOCOL_VERSION}`,
    };
  }
  if (!SUPPORTED_PROTOCOL_VERSIONS.map(String).includes(version)) {
    // A close reason is at most 123 bytes: keep the echoed value short.
    return {
      kind: 'reject-version',
      reason: `unsupported protocol version "${version.slice(0, 16)}"; this edge speaks v=${SUPPORTED_PROTOCOL_VERSIONS.join(',')}`,
    };
  }
  const token = params.get('token');
  // No token: an anonymous listener. It may only listen, and only to public streams that allow
  // anonymous listeners (the join decides, from the edge's memory of the stream). This is what
  // a listener token said too, but without a control-plane call per listener before its join.
  if (!token) return { kind: 'accept', auth: anonymousListener(params.get('listener')), tokenless: true };
  try {
    // Keys first: a control plane that cannot be reached is a 503, not a bad token.
    await keys.load();
    const verified = await checks.verify(token);
    const { claims } = verified;
    const listener = claims.typ === 'listener';
    if (listener && claims.stream_id === undefined) {
      throw new UnauthenticatedError('invalid token: a listener token must name its stream');
    }
    // The signature outlives a logout: the session must still be open, and the roles are the current ones.
    const user = listener ? null : await checks.current(verified, token);
    return {
      kind: 'accept',
      tokenless: false,
      auth: {
        kind: listener ? 'listener' : 'user',
        userId: listener ? 0 : verified.userId,
        username: user?.username ?? claims.username,
        roles: user ? [...user.roles] : [],
        streamId: listener ? (claims.stream_id ?? null) : null,
        sessionId: listener ? null : verified.sessionId,
        expiresAt: verified.expiresAt.getTime(),
        token: listener ? null : token,
        anonymousId: listener
          ? createHash('sha256')
              .update(`${claims.stream_id}:${verified.sessionId}`)
              .digest('hex')
              .slice(0, 32)
          : null,
      },
    };
  } catch (error) {
    return { kind: 'reject-http', error: toVezaError(error) };
  }
}
