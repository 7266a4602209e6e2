/**
 * The edge's token checks (the WebSocket handshake and `auth.refresh`), answered from memory:
 *
 * - the signature, verified locally against the control plane's JWKS and kept per token string
 *   until the token expires (common/access-token.ts);
 * - the login session and the user's current roles, from a cache loaded on a miss by asking the
 *   control plane once (ValidateToken: it checks the session and answers the user as stored),
 *   and kept current by the acknowledged invalidations on the bus (contracts/token-caches.ts):
 *   a revoked session becomes a tombstone and its connections here are closed with 4403, a
 *   changed user gets its new roles here and on its open connections, all before this edge
 *   acknowledges, so once the control plane's revoking call returned this edge refuses the
 *   session's tokens.
 *
 * Entries older than `maxAgeMs` are asked again (what no invalidation reached: a change at the
 * CLI, an invalidation missed while the bus reconnected). A tombstone that the LRU dropped is
 * asked again too, and the control plane answers "session revoked".
 */
import { UnauthenticatedError } from '../../common/contracts/index.js';
import {
  DEFAULT_VERIFIED_TOKENS,
  holdTokenCache,
  type Logger,
  LruMap,
  type TokenCacheHolder,
  USER_ROLES,
  type UserRole,
  type VerifiedAccessToken,
  VerifiedTokens,
} from '../../common/index.js';
import type { EventBus } from '../../common/ports/index.js';
import type { ControlPlaneClient } from '../../control-plane/client/index.js';
import type { JwksKeyStore } from './jwks.js';

export interface EdgeTokenCacheLimits {
  /** Verified token strings kept (about 1.5 kB each). */
  tokens: number;
  /** Login sessions kept, revoked ones included. */
  sessions: number;
  /** Users kept (roles and username). */
  users: number;
  /** An entry older than this is asked again. */
  maxAgeMs: number;
}

export const DEFAULT_EDGE_TOKEN_CACHE_LIMITS: EdgeTokenCacheLimits = {
  tokens: DEFAULT_VERIFIED_TOKENS,
  sessions: 100_000,
  users: 50_000,
  maxAgeMs: 60_000,
};

/** What a connection follows: its session's revocation and its user's roles. */
export interface TokenHolder {
  /** The session was revoked: refuse everything and close with 4403. */
  revoked(): void;
  /** The user's roles or username changed. */
  userChanged(user: CurrentUser): void;
}

export interface CurrentUser {
  roles: UserRole[];
  username: string;
}

export interface EdgeTokenChecksOptions {
  bus: EventBus;
  log: Logger;
  keys: JwksKeyStore;
  controlPlane: Pick<ControlPlaneClient, 'auth'>;
  /** The edge's id, in the edges' token-cache presence group. */
  nodeId: string;
  bootId: string;
  /** config.PRESENCE_HEARTBEAT_MS. */
  intervalMs: number;
  limits?: Partial<EdgeTokenCacheLimits>;
}

interface CachedSession {
  userId: number;
  revoked: boolean;
  loadedAt: number;
}

interface CachedUser extends CurrentUser {
  loadedAt: number;
}

interface Load {
  sessionId: string;
  userId: number;
  promise: Promise<CurrentUser>;
  /** An invalidation overtook it: its answer is not stored. */
  stale: boolean;
}

const isUserRole = (role: string): role is UserRole => (USER_ROLES as readonly string[]).includes(role);

export class EdgeTokenChecks {
  readonly #options: EdgeTokenChecksOptions;
  readonly #limits: EdgeTokenCacheLimits;
  readonly #verified: VerifiedTokens;
  readonly #sessions: LruMap<string, CachedSession>;
  readonly #users: LruMap<number, CachedUser>;
  /** Running ValidateToken calls, by token. */
  readonly #loads = new Map<string, Load>();
  readonly #bySession = new Map<string, Set<TokenHolder>>();
  readonly #byUser = new Map<number, Set<TokenHolder>>();
  readonly #holder: TokenCacheHolder;

  constructor(options: EdgeTokenChecksOptions) {
    this.#options = options;
    this.#limits = { ...DEFAULT_EDGE_TOKEN_CACHE_LIMITS, ...options.limits };
    this.#verified = new VerifiedTokens(options.keys.getKey, this.#limits.tokens);
    this.#sessions = new LruMap(this.#limits.sessions);
    this.#users = new LruMap(this.#limits.users);
    this.#holder = holdTokenCache({
      bus: options.bus,
      log: options.log,
      role: 'edge',
      nodeId: options.nodeId,
      bootId: options.bootId,
      intervalMs: options.intervalMs,
      apply: (invalidation) => {
        if (invalidation.type === 'sessions-revoked') {
          this.#revoke(invalidation.userId, invalidation.sessionIds);
        } else {
          this.#userChanged(invalidation.userId, {
            roles: invalidation.user.roles.filter(isUserRole),
            username: invalidation.user.username,
          });
        }
      },
    });
  }

  /** Resolves once invalidations reach this edge and it has announced itself. */
  start(): Promise<void> {
    return this.#holder.ready;
  }

  /** Signature, issuer, audience, expiry and claims; the same string is verified once. Call keys.load() first. */
  verify(token: string): Promise<VerifiedAccessToken> {
    return this.#verified.verify(token);
  }

  /**
   * The user of a verified access token whose session is open, as stored now: from the cache,
   * or from the control plane (ValidateToken), whose refusal passes through as is.
   */
  async current(verified: VerifiedAccessToken, token: string): Promise<CurrentUser> {
    const { sessionId, userId } = verified;
    const session = this.#sessions.get(sessionId);
    // A revocation is final.
    if (session?.revoked) throw new UnauthenticatedError('invalid token: session revoked');
    const user = this.#users.get(userId);
    if (
      session &&
      user &&
      session.userId === userId &&
      this.#holder.trusted() &&
      this.#fresh(session.loadedAt) &&
      this.#fresh(user.loadedAt)
    ) {
      return user;
    }
    const answer = await this.#load(verified, token);
    // A revocation applied while the control plane answered wins over the answer.
    if (this.#sessions.get(sessionId)?.revoked)
      throw new UnauthenticatedError('invalid token: session revoked');
    return answer;
  }

  /** Follows the session's revocation and the user's changes for one connection. */
  track(holder: TokenHolder, sessionId: string, userId: number): void {
    add(this.#bySession, sessionId, holder);
    add(this.#byUser, userId, holder);
  }

  untrack(holder: TokenHolder, sessionId: string, userId: number): void {
    remove(this.#bySession, sessionId, holder);
    remove(this.#byUser, userId, holder);
  }

  /** Says goodbye to the control planes and stops following invalidations. */
  close(): Promise<void> {
    return this.#holder.close();
  }

  #load(verified: VerifiedAccessToken, token: string): Promise<CurrentUser> {
    const trusted = this.#holder.trusted();
    // While the holder is not trusted yet nothing is shared: each check asks for itself.
    const running = trusted ? this.#loads.get(token) : undefined;
    if (running) return running.promise;
    const load: Load = {
      sessionId: verified.sessionId,
      userId: verified.userId,
      stale: false,
      promise: Promise.resolve({ roles: [], username: '' }),
    };
    load.promise = this.#options.controlPlane.auth.validateToken({ token }).then((response) => {
      const user: CachedUser = {
        roles: (response.userInfo?.roles ?? []).filter(isUserRole),
        username: response.userInfo?.username ?? verified.claims.username,
        loadedAt: performance.now(),
      };
      if (trusted && !load.stale) {
        this.#sessions.set(verified.sessionId, {
          userId: verified.userId,
          revoked: false,
          loadedAt: user.loadedAt,
        });
        this.#users.set(verified.userId, user);
      }
      return { roles: user.roles, username: user.username };
    });
    if (trusted) {
      this.#loads.set(token, load);
      const forget = () => {
        if (this.#loads.get(token) === load) this.#loads.delete(token);
      };
      load.promise.then(forget, forget);
    }
    return load.promise;
  }

  #revoke(userId: number, sessionIds: readonly string[]): void {
    const now = performance.now();
    for (const sessionId of sessionIds) {
      this.#sessions.set(sessionId, { userId, revoked: true, loadedAt: now });
      this.#overtake((load) => load.sessionId === sessionId);
      const holders = [...(this.#bySession.get(sessionId) ?? [])];
      this.#bySession.delete(sessionId);
      for (const holder of holders) {
        remove(this.#byUser, userId, holder);
        holder.revoked();
      }
      if (holders.length > 0) {
        this.#options.log.info({ connections: holders.length }, 'session revoked: its connections closed');
      }
    }
  }

  #userChanged(userId: number, user: CurrentUser): void {
    this.#users.set(userId, { ...user, loadedAt: performance.now() });
    this.#overtake((load) => load.userId === userId);
    for (const holder of this.#byUser.get(userId) ?? []) holder.userChanged(user);
  }

  /** Marks the matching running loads stale, and keeps checks that start from now on from joining them. */
  #overtake(matches: (load: Load) => boolean): void {
    for (const [token, load] of this.#loads) {
      if (!matches(load)) continue;
      load.stale = true;
      this.#loads.delete(token);
    }
  }

  #fresh(loadedAt: number): boolean {
    return performance.now() - loadedAt < this.#limits.maxAgeMs;
  }
}

function add<K>(index: Map<K, Set<TokenHolder>>, key: K, holder: TokenHolder): void {
  let set = index.get(key);
  if (!set) {
    set = new Set();
    index.set(key, set);
  }
  set.add(holder);
}

function remove<K>(index: Map<K, Set<TokenHolder>>, key: K, holder: TokenHolder): void {
  const set = index.get(key);
  set?.delete(holder);
  if (set?.size === 0) index.delete(key);
}
