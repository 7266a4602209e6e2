/**
 * Token checks answered from memory: what ValidateToken and the gRPC interceptors' JWT check run.
 *
 * A check verifies the token's signature (kept per token string until it expires, see
 * common/access-token.ts), then answers from a cache of login sessions and users, loaded from
 * the SessionStore and the users table on a miss. The cache is kept current by the
 * acknowledged invalidations of ./invalidations.ts: a revoked session and a changed user are
 * dropped before this process acknowledges (the next check reads them again, and a revoked
 * session read from the store is kept as such), so once a revoking call returned, no check here
 * answers from the old state.
 *
 * What no invalidation covers is bounded by `maxAgeMs`: an entry older than that is loaded
 * again (a user changed at the CLI, which has no bus in standalone mode; an invalidation this
 * process missed while its bus was reconnecting). A session's cached expiry can only be too
 * early (a refresh extends it without an invalidation), so an entry past it is loaded again
 * rather than answered "expired".
 *
 * Loads are shared between concurrent checks of the same key, and a load that an invalidation
 * overtook is neither stored nor shared with checks that start after it.
 */
import { UnauthenticatedError } from '../../common/contracts/index.js';
import type { Sql } from '../../common/db/index.js';
import {
  counter,
  holdTokenCache,
  type Logger,
  LruMap,
  type TokenCacheHolder,
  type VerifiedAccessToken,
  VerifiedTokens,
} from '../../common/index.js';
import type { BlobStorage, EventBus, SessionRecord, SessionStore } from '../../common/ports/index.js';
import type { UserInfo } from '../../proto/gen/veza/auth/auth.js';
import type { AuthenticatedUser } from '../grpc/index.js';
import { type Invalidations, startInvalidations } from './invalidations.js';
import type { SigningKeys } from './signing-keys.js';
import { toUserInfo } from './user-info.js';
import { findUserById, type UserRecord } from './users.js';

export interface TokenCacheLimits {
  /** Verified token strings kept (about 1.5 kB each). */
  tokens: number;
  /** Login sessions kept, revoked ones included (about 150 B each). */
  sessions: number;
  /** Users kept, with their UserInfo (about 1 kB each). */
  users: number;
  /** An entry older than this is loaded again. */
  maxAgeMs: number;
}

export const DEFAULT_TOKEN_CACHE_LIMITS: TokenCacheLimits = {
  tokens: 10_000,
  sessions: 100_000,
  users: 20_000,
  maxAgeMs: 60_000,
};

export interface TokenChecksOptions {
  sql: Sql;
  sessions: SessionStore;
  keys: SigningKeys;
  blobs: Pick<BlobStorage, 'publicUrl'>;
  bus: EventBus;
  log: Logger;
  /** This process's node id in the control planes' presence group. */
  nodeId: string;
  /** config.PRESENCE_HEARTBEAT_MS. */
  intervalMs: number;
  limits?: Partial<TokenCacheLimits>;
}

interface CachedSession {
  userId: number;
  /** Epoch ms; +Infinity for a revoked one. */
  expiresAt: number;
  revoked: boolean;
  /** performance.now() when loaded. */
  loadedAt: number;
}

export interface CachedUser {
  record: UserRecord;
  /** The UserInfo ValidateToken answers with, built once per load. */
  info: UserInfo;
  loadedAt: number;
}

interface Load<T> {
  promise: Promise<T>;
  /** An invalidation overtook it: its result is not stored. */
  stale: boolean;
}

const loads = () =>
  counter('veza_auth_cache_loads_total', 'Token-check cache misses loaded from storage, by cache', ['cache']);

export class TokenChecks {
  readonly #options: TokenChecksOptions;
  readonly #limits: TokenCacheLimits;
  readonly #verified: VerifiedTokens;
  readonly #sessions: LruMap<string, CachedSession>;
  readonly #users: LruMap<number, CachedUser>;
  readonly #sessionLoads = new Map<string, Load<CachedSession | null>>();
  readonly #userLoads = new Map<number, Load<CachedUser | null>>();
  readonly #holder: TokenCacheHolder;

  constructor(options: TokenChecksOptions) {
    this.#options = options;
    this.#limits = { ...DEFAULT_TOKEN_CACHE_LIMITS, ...options.limits };
    this.#verified = new VerifiedTokens(options.keys.getKey, this.#limits.tokens);
    this.#sessions = new LruMap(this.#limits.sessions);
    this.#users = new LruMap(this.#limits.users);
    this.#holder = holdTokenCache({
      bus: options.bus,
      log: options.log.child({ component: 'token-checks' }),
      role: 'controlPlane',
      nodeId: options.nodeId,
      intervalMs: options.intervalMs,
      apply: (invalidation) => {
        if (invalidation.type === 'sessions-revoked') {
          for (const sessionId of invalidation.sessionIds) this.#revoked(sessionId);
        } else {
          this.#userChanged(invalidation.userId);
        }
      },
    });
  }

  /** Resolves once this process follows invalidations and has announced itself. */
  get ready(): Promise<void> {
    return this.#holder.ready;
  }

  /**
   * Verifies signature and claims, and that the token's session is open: the checks and
   * messages of every protected call.
   */
  async check(token: string): Promise<VerifiedAccessToken> {
    const verified = await this.#verified.verify(token);
    if (verified.claims.typ !== 'access')
      throw new UnauthenticatedError('invalid token: not a user access token');
    const session = await this.#session(verified.sessionId);
    if (!session || session.userId !== verified.userId)
      throw new UnauthenticatedError('invalid token: unknown session');
    if (session.revoked) throw new UnauthenticatedError('invalid token: session revoked');
    if (session.expiresAt <= Date.now()) throw new UnauthenticatedError('invalid token: session expired');
    return verified;
  }

  /** The user as stored now (null when there is none). */
  async user(userId: number): Promise<CachedUser | null> {
    const cached = this.#users.get(userId);
    if (cached && this.#holder.trusted() && this.#fresh(cached.loadedAt)) return cached;
    return this.#load(this.#userLoads, this.#users, userId, 'users', async () => {
      const record = await findUserById(this.#options.sql, userId);
      return record
        ? { record, info: toUserInfo(record, this.#options.blobs), loadedAt: performance.now() }
        : null;
    });
  }

  /**
   * The answer of check() and user() when everything it needs is in memory and usable, without
   * waiting; undefined when anything is missing, stale or wrong (then check() says what). The
   * hot path of ValidateToken and the interceptor: no promise, no PostgreSQL.
   */
  checkNow(token: string): { verified: VerifiedAccessToken; user: CachedUser } | undefined {
    if (!this.#holder.trusted()) return undefined;
    const verified = this.#verified.peek(token);
    if (verified?.claims.typ !== 'access') return undefined;
    const session = this.#sessions.get(verified.sessionId);
    if (
      !session ||
      session.revoked ||
      session.userId !== verified.userId ||
      session.expiresAt <= Date.now() ||
      !this.#fresh(session.loadedAt)
    ) {
      return undefined;
    }
    const user = this.#users.get(verified.userId);
    if (!user || !this.#fresh(user.loadedAt)) return undefined;
    return { verified, user };
  }

  /**
   * The TokenVerifier of the gRPC layer: roles, email and username as stored now, so a role
   * taken away applies to the next call and not only to the next token.
   */
  readonly verifier = (token: string): AuthenticatedUser | Promise<AuthenticatedUser> => {
    const hit = this.checkNow(token);
    if (hit) return authenticatedUser(hit.verified, hit.user.record);
    return this.check(token).then(async (verified) =>
      authenticatedUser(verified, (await this.user(verified.userId))?.record),
    );
  };

  /** Says goodbye to the control planes and stops following invalidations. */
  close(): Promise<void> {
    return this.#holder.close();
  }

  async #session(sessionId: string): Promise<CachedSession | null> {
    const cached = this.#sessions.get(sessionId);
    if (
      cached &&
      this.#holder.trusted() &&
      this.#fresh(cached.loadedAt) &&
      (cached.revoked || cached.expiresAt > Date.now())
    ) {
      return cached;
    }
    return this.#load(this.#sessionLoads, this.#sessions, sessionId, 'sessions', async () => {
      const record = await this.#options.sessions.get(sessionId);
      return record ? toCachedSession(record) : null;
    });
  }

  /** Loads `key` once for concurrent callers, and stores the result unless an invalidation overtook it. */
  async #load<K, V>(
    running: Map<K, Load<V | null>>,
    cached: LruMap<K, V>,
    key: K,
    cache: 'sessions' | 'users',
    read: () => Promise<V | null>,
  ): Promise<V | null> {
    const trusted = this.#holder.trusted();
    // While the holder is not trusted yet nothing is shared: each check reads for itself.
    const shared = trusted ? running.get(key) : undefined;
    if (shared) return shared.promise;
    loads().inc({ cache });
    const load: Load<V | null> = { stale: false, promise: Promise.resolve(null) };
    load.promise = read().then((value) => {
      if (value !== null && trusted && !load.stale) cached.set(key, value);
      return value;
    });
    if (trusted) {
      running.set(key, load);
      const forget = () => {
        if (running.get(key) === load) running.delete(key);
      };
      load.promise.then(forget, forget);
    }
    return load.promise;
  }

  /**
   * Dropped rather than marked: the next check reads the store, which says "revoked" (and keeps
   * that answer for the maximum age) or, once the retention sweep deleted the row, "unknown",
   * as before there was a cache.
   */
  #revoked(sessionId: string): void {
    this.#sessions.delete(sessionId);
    overtake(this.#sessionLoads, sessionId);
  }

  #userChanged(userId: number): void {
    this.#users.delete(userId);
    overtake(this.#userLoads, userId);
  }

  #fresh(loadedAt: number): boolean {
    return performance.now() - loadedAt < this.#limits.maxAgeMs;
  }
}

function authenticatedUser(verified: VerifiedAccessToken, user: UserRecord | undefined): AuthenticatedUser {
  const { userId, sessionId, claims, expiresAt } = verified;
  return {
    userId,
    sessionId,
    roles: [...(user?.roles ?? claims.roles)],
    email: user?.email ?? claims.email,
    username: user?.username ?? claims.username,
    expiresAt,
  };
}

/** Marks a running load stale, and keeps checks that start from now on from joining it. */
function overtake<K, V>(running: Map<K, Load<V>>, key: K): void {
  const load = running.get(key);
  if (!load) return;
  load.stale = true;
  running.delete(key);
}

function toCachedSession(record: SessionRecord): CachedSession {
  return {
    userId: record.userId,
    expiresAt: record.revokedAt ? Number.POSITIVE_INFINITY : record.expiresAt.getTime(),
    revoked: record.revokedAt !== null,
    loadedAt: performance.now(),
  };
}

export interface TokenCaching {
  checks: TokenChecks;
  invalidations: Invalidations;
  /** Says goodbye as a holder and stops watching the holders. */
  close(): Promise<void>;
}

/**
 * A control plane's part in the token caches: its own cache (a holder, announced to the other
 * control planes) and the acknowledged invalidations it sends when it changes a session or a user.
 */
export async function startTokenCaching(
  options: TokenChecksOptions & { ackTimeoutMs?: number },
): Promise<TokenCaching> {
  const checks = new TokenChecks(options);
  const invalidations = startInvalidations({
    bus: options.bus,
    log: options.log,
    intervalMs: options.intervalMs,
    ...(options.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: options.ackTimeoutMs }),
  });
  const close = async () => {
    invalidations.close();
    await checks.close();
  };
  try {
    await Promise.all([checks.ready, invalidations.ready]);
  } catch (error) {
    await close();
    throw error;
  }
  return { checks, invalidations, close };
}
