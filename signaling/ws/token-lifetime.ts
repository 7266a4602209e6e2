/**
 * The lifetime of a connection's access token, enforced on the open connection and not only
 * at the handshake (docs/signaling.md, "Token lifetime"):
 *
 * - `tokenExpiring` is sent shortly before the token expires, so the client hands over a fresh
 *   one with `auth.refresh` (verified as the handshake's token is: locally, against the JWKS);
 * - once it has expired, every request but `auth.refresh` is refused (`unauthenticated` /
 *   `token_expired`), and unless a fresh token arrives within `expiredTokenCloseMs` the
 *   connection is closed with 4401;
 * - when the control plane revokes the token's login session (logout, refresh-token reuse, an
 *   administrator's revocation: an acknowledged invalidation, ./token-checks.ts), the session's
 *   connections are closed with 4403 before this edge acknowledges, and the session's tokens are
 *   refused (handshake, refresh);
 * - when the user's roles change, the connection holds the new ones from then on.
 *
 * Listener tokens are exempt: they only have to last until the join (a reconnect gets a new
 * one, anonymously), they belong to no login session, and they cannot be refreshed.
 */
import {
  FailedPreconditionError,
  PermissionDeniedError,
  UnauthenticatedError,
} from '../../common/contracts/index.js';
import type { Logger } from '../../common/index.js';
import { CLOSE_CODES, type MethodResults, type NotificationFrame } from '../protocol/index.js';
import { SignalingConditionError } from './errors.js';
import type { JwksKeyStore } from './jwks.js';
import { wsNotifications } from './metrics.js';
import type { CurrentUser, EdgeTokenChecks, TokenHolder } from './token-checks.js';
import type { ConnectionAuth } from './upgrade.js';

export interface TokenLifetimeLimits {
  /** How long before expiry `tokenExpiring` is sent (at most half the token's remaining life). */
  tokenExpiryWarningMs: number;
  /** How long a connection whose token expired stays open (refusing requests, accepting `auth.refresh`) before 4401. */
  expiredTokenCloseMs: number;
}

export const DEFAULT_TOKEN_LIFETIME_LIMITS: TokenLifetimeLimits = {
  tokenExpiryWarningMs: 60_000,
  expiredTokenCloseMs: 10_000,
};

export const tokenExpired = () =>
  new SignalingConditionError(
    'unauthenticated',
    'token_expired',
    'the access token of this connection has expired: send a fresh one with auth.refresh, or reconnect',
  );

export const sessionRevoked = () =>
  new SignalingConditionError(
    'unauthenticated',
    'session_revoked',
    'the login session of this connection was revoked: sign in again',
  );

/** setTimeout's longest delay; a later deadline is reached in several steps. */
const MAX_DELAY_MS = 2 ** 31 - 1;

export interface TokenLifetimeOptions {
  /** The connection's auth, shared with its chat session: a refresh updates it for both. */
  auth: ConnectionAuth;
  limits: TokenLifetimeLimits;
  keys: JwksKeyStore;
  checks: Pick<EdgeTokenChecks, 'verify' | 'current' | 'track' | 'untrack'>;
  log: Logger;
  send(frame: NotificationFrame): void;
  end(code: number, reason: string): void;
}

/** One connection's token: when to warn, when it is over, and its replacement by `auth.refresh`. */
export class TokenLifetime implements TokenHolder {
  readonly auth: ConnectionAuth;
  readonly #options: TokenLifetimeOptions;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When `tokenExpiring` is due for the current token (epoch ms). */
  #warnAt = 0;
  /** The expiry `tokenExpiring` was last sent for: a refresh to the same expiry does not warn twice. */
  #warnedFor = 0;
  #trackedSession: string | null = null;
  #revoked = false;
  #stopped = false;

  constructor(options: TokenLifetimeOptions) {
    this.#options = options;
    this.auth = options.auth;
  }

  /** Starts following the token (its expiry, its session's revocation). */
  start(): void {
    if (this.auth.kind !== 'user') return;
    this.#track(this.auth.sessionId);
    this.#plan();
  }

  /** Throws the protocol's error when the connection may no longer make requests. */
  check(): void {
    if (this.#revoked) throw sessionRevoked();
    if (this.auth.kind === 'user' && Date.now() >= this.auth.expiresAt) throw tokenExpired();
  }

  /** `auth.refresh`: verifies `token` as the handshake does and makes it the connection's token. */
  async refresh(token: string): Promise<MethodResults['auth.refresh']> {
    if (this.auth.kind !== 'user') {
      throw new FailedPreconditionError(
        'this connection was opened with a listener token: there is no account token to refresh',
      );
    }
    if (this.#revoked) throw sessionRevoked();
    const { keys, checks } = this.#options;
    // Keys first: a control plane that cannot be reached is "unavailable", not a bad token.
    await keys.load();
    const verified = await checks.verify(token);
    if (verified.claims.typ === 'listener') {
      throw new UnauthenticatedError('invalid token: a listener token cannot replace an access token');
    }
    if (verified.userId !== this.auth.userId) {
      throw new PermissionDeniedError('the token is for another user: open a new connection instead');
    }
    // Its session must be open (a revoked one is refused at once, cache or control plane).
    const user = await checks.current(verified, token);
    if (this.#revoked) throw sessionRevoked();
    this.auth.token = token;
    this.auth.expiresAt = verified.expiresAt.getTime();
    this.auth.roles = user.roles;
    this.auth.sessionId = verified.sessionId;
    if (!this.#stopped) {
      this.#track(verified.sessionId);
      this.#plan();
    }
    return { expiresAt: verified.expiresAt.toISOString() };
  }

  /** The user's roles changed (an administrator's action): they apply to the next request. */
  userChanged(user: CurrentUser): void {
    if (this.auth.kind !== 'user') return;
    this.auth.roles = [...user.roles];
    this.auth.username = user.username;
  }

  /** The token's session was revoked: refuse everything and close (EdgeTokenChecks calls it). */
  revoked(): void {
    if (this.#revoked || this.#stopped) return;
    this.#revoked = true;
    this.#clear();
    this.#options.end(CLOSE_CODES.sessionRevoked, 'session revoked: sign in again');
  }

  /** The connection is gone. */
  stop(): void {
    this.#stopped = true;
    this.#clear();
    this.#track(null);
  }

  #track(sessionId: string | null): void {
    const { checks } = this.#options;
    if (sessionId === this.#trackedSession) return;
    if (this.#trackedSession !== null) checks.untrack(this, this.#trackedSession, this.auth.userId);
    this.#trackedSession = sessionId;
    if (sessionId !== null) checks.track(this, sessionId, this.auth.userId);
  }

  /** A new token: warn half-way through its remaining life at the latest, then follow it. */
  #plan(): void {
    const remaining = this.auth.expiresAt - Date.now();
    const lead = Math.min(this.#options.limits.tokenExpiryWarningMs, Math.max(0, remaining / 2));
    this.#warnAt = this.auth.expiresAt - lead;
    this.#tick();
  }

  /** Does what is due now and sleeps until the next step: warning, expiry, close. */
  #tick(): void {
    this.#clear();
    if (this.#stopped || this.#revoked) return;
    const now = Date.now();
    const expiresAt = this.auth.expiresAt;
    let next: number;
    if (now < expiresAt) {
      if (this.#warnedFor === expiresAt) next = expiresAt;
      else if (now < this.#warnAt) next = this.#warnAt;
      else {
        this.#warnedFor = expiresAt;
        this.#options.send({
          notification: 'tokenExpiring',
          data: { expiresAt: new Date(expiresAt).toISOString(), expiresInMs: expiresAt - now },
        });
        wsNotifications.inc({ notification: 'tokenExpiring' });
        next = expiresAt;
      }
    } else {
      const closeAt = expiresAt + this.#options.limits.expiredTokenCloseMs;
      if (now >= closeAt) {
        this.#options.log.info('access token expired without a refresh: connection closed');
        this.#options.end(CLOSE_CODES.tokenExpired, 'access token expired: reconnect with a fresh one');
        return;
      }
      next = closeAt;
    }
    this.#timer = setTimeout(() => this.#tick(), Math.min(MAX_DELAY_MS, Math.max(0, next - now)));
    this.#timer.unref?.();
  }

  #clear(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
