/**
 * The lifetime of a connection's access token, enforced on the open connection and not only
 * at the handshake (docs/signaling.md, "Token lifetime"):
 *
 * - `tokenExpiring` is sent shortly before the token expires, so the client hands over a fresh
 *   one with `auth.refresh` (verified as the handshake's token is: locally, against the JWKS);
 * - once it has expired, every request but `auth.refresh` is refused (`unauthenticated` /
 *   `token_expired`), and unless a fresh token arrives within `expiredTokenCloseMs` the
 *   connection is closed with 4401;
 * - when the control plane revokes the token's login session (logout, refresh-token reuse: a
 *   `revoked` event on `auth.sessions.<userId>`), the session's connections are closed with 4403,
 *   and this edge refuses the session's tokens (handshake, refresh) until they have expired.
 *
 * Listener tokens are exempt: they only have to last until the join (a reconnect gets a new
 * one, anonymously), they belong to no login session, and they cannot be refreshed.
 */
import {
  ALL_SESSION_EVENTS,
  FailedPreconditionError,
  PermissionDeniedError,
  sessionEventSchema,
  UnauthenticatedError,
} from '../../common/contracts/index.js';
import { type Logger, verifyAccessToken } from '../../common/index.js';
import type { EventBus, Subscription } from '../../common/ports/index.js';
import { CLOSE_CODES, type MethodResults, type NotificationFrame } from '../protocol/index.js';
import { SignalingConditionError } from './errors.js';
import type { JwksKeyStore } from './jwks.js';
import { wsNotifications } from './metrics.js';
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

/** How many revoked sessions an edge remembers at most (each only until its tokens expired). */
const REVOKED_MEMORY = 100_000;

/** setTimeout's longest delay; a later deadline is reached in several steps. */
const MAX_DELAY_MS = 2 ** 31 - 1;

/**
 * Follows session revocations on the bus: closes the connections of a revoked session and
 * remembers the session for `rememberMs` (the access-token lifetime: no token of it is valid
 * for longer), so a token of it that is still unexpired cannot open or refresh a connection.
 */
export class SessionRevocations {
  readonly #bus: EventBus;
  readonly #log: Logger;
  readonly #rememberMs: number;
  readonly #connections = new Map<string, Set<TokenLifetime>>();
  /** Session id -> when it can be forgotten (epoch ms); insertion order is expiry order. */
  readonly #revoked = new Map<string, number>();
  #subscription: Subscription | null = null;

  constructor(options: { bus: EventBus; log: Logger; rememberMs: number }) {
    this.#bus = options.bus;
    this.#log = options.log;
    this.#rememberMs = options.rememberMs;
  }

  /** Resolves once the bus routes session events to this edge. */
  async start(): Promise<void> {
    this.#subscription = this.#bus.subscribe(ALL_SESSION_EVENTS, (payload) => {
      const parsed = sessionEventSchema.safeParse(payload);
      if (!parsed.success) {
        this.#log.warn({ issue: parsed.error.issues[0]?.message }, 'ignoring a malformed session event');
        return;
      }
      if (parsed.data.type === 'revoked') this.revoke(parsed.data.session.sessionId);
    });
    await this.#subscription.ready;
  }

  isRevoked(sessionId: string): boolean {
    const until = this.#revoked.get(sessionId);
    return until !== undefined && until > Date.now();
  }

  /** Marks the session revoked and closes its connections on this edge. */
  revoke(sessionId: string): void {
    this.#prune();
    this.#revoked.delete(sessionId);
    this.#revoked.set(sessionId, Date.now() + this.#rememberMs);
    const connections = [...(this.#connections.get(sessionId) ?? [])];
    this.#connections.delete(sessionId);
    for (const connection of connections) connection.revoked();
    if (connections.length > 0) {
      this.#log.info({ connections: connections.length }, 'session revoked: its connections closed');
    }
  }

  track(connection: TokenLifetime, sessionId: string): void {
    let set = this.#connections.get(sessionId);
    if (!set) {
      set = new Set();
      this.#connections.set(sessionId, set);
    }
    set.add(connection);
  }

  untrack(connection: TokenLifetime, sessionId: string): void {
    const set = this.#connections.get(sessionId);
    set?.delete(connection);
    if (set?.size === 0) this.#connections.delete(sessionId);
  }

  close(): void {
    this.#subscription?.unsubscribe();
    this.#subscription = null;
  }

  #prune(): void {
    const now = Date.now();
    for (const [sessionId, until] of this.#revoked) {
      if (until > now && this.#revoked.size < REVOKED_MEMORY) break;
      this.#revoked.delete(sessionId);
    }
  }
}

export interface TokenLifetimeOptions {
  /** The connection's auth, shared with its chat session: a refresh updates it for both. */
  auth: ConnectionAuth;
  limits: TokenLifetimeLimits;
  keys: JwksKeyStore;
  revocations: SessionRevocations | null;
  log: Logger;
  send(frame: NotificationFrame): void;
  end(code: number, reason: string): void;
}

/** One connection's token: when to warn, when it is over, and its replacement by `auth.refresh`. */
export class TokenLifetime {
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
    const { keys, revocations } = this.#options;
    // Keys first: a control plane that cannot be reached is "unavailable", not a bad token.
    await keys.load();
    const verified = await verifyAccessToken(token, keys.getKey);
    if (verified.claims.typ === 'listener') {
      throw new UnauthenticatedError('invalid token: a listener token cannot replace an access token');
    }
    if (verified.userId !== this.auth.userId) {
      throw new PermissionDeniedError('the token is for another user: open a new connection instead');
    }
    if (revocations?.isRevoked(verified.sessionId)) {
      throw new UnauthenticatedError('invalid token: session revoked');
    }
    if (this.#revoked) throw sessionRevoked();
    this.auth.token = token;
    this.auth.expiresAt = verified.expiresAt.getTime();
    this.auth.roles = verified.claims.roles;
    this.auth.sessionId = verified.sessionId;
    if (!this.#stopped) {
      this.#track(verified.sessionId);
      this.#plan();
    }
    return { expiresAt: verified.expiresAt.toISOString() };
  }

  /** The token's session was revoked: refuse everything and close (SessionRevocations calls it). */
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
    const revocations = this.#options.revocations;
    if (!revocations || sessionId === this.#trackedSession) return;
    if (this.#trackedSession !== null) revocations.untrack(this, this.#trackedSession);
    this.#trackedSession = sessionId;
    if (sessionId !== null) revocations.track(this, sessionId);
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
