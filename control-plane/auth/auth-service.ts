/**
 * veza.auth.AuthService: accounts, tokens and sessions (see proto/veza/auth/auth.proto).
 *
 * Policies: the token-carrying rpcs (Authenticate, ValidateToken, RefreshToken,
 * RevokeToken) are public because the token in the request is the credential, and the
 * seed's plain clients call them without metadata. Rpcs about "me" need a bearer token;
 * GetUserInfo, StreamUserSessions and RevokeUserSessions also serve other services by API key.
 *
 * ValidateToken and the JWT interceptor answer from the token checks' cache (./token-checks.ts);
 * every call that changes what they answer (closing sessions, roles, the profile, the email's
 * confirmation) tells every token cache and waits for them before it returns (./invalidations.ts).
 */

import {
  InvalidArgumentError,
  PermissionDeniedError,
  parseSessionEvent,
  sessionEventSubject,
  UnauthenticatedError,
} from '../../common/contracts/index.js';
import type { Sql } from '../../common/db/index.js';
import { type Config, hasPermission, type Logger, verifyAccessToken } from '../../common/index.js';
import {
  type BlobStorage,
  type EventBus,
  isSessionActive,
  type RateLimiter,
  type SessionRecord,
  type SessionStore,
} from '../../common/ports/index.js';
import type { AuthServiceService, UserSession } from '../../proto/gen/veza/auth/auth.js';
import type { CallContext, ServiceImplementation } from '../grpc/index.js';
import { createAccount } from './accounts.js';
import { storeAvatar } from './avatars.js';
import { consumeConfirmation } from './confirmations.js';
import type { Invalidations } from './invalidations.js';
import { accountRules, spend } from './login-limits.js';
import type { OutboxDispatcher } from './outbox.js';
import { verifyAgainstDecoy, verifyPassword } from './passwords.js';
import { refreshTokenOwner } from './refresh-tokens.js';
import { closeSession, closeUserSessions, openSession, refreshSession } from './sessions.js';
import type { SigningKeys } from './signing-keys.js';
import type { TokenChecks } from './token-checks.js';
import { toUserInfo } from './user-info.js';
import {
  audit,
  changeRole,
  findUserByEmail,
  getUserById,
  normalizeEmail,
  type UserRecord,
  updateProfile,
} from './users.js';
import { loginSchema, parseClientIp, parseInput, profileSchema, roleInputSchema } from './validation.js';

export interface AuthServiceDeps {
  config: Config;
  sql: Sql;
  log: Logger;
  keys: SigningKeys;
  sessions: SessionStore;
  bus: EventBus;
  rateLimiter: RateLimiter;
  blobs: BlobStorage;
  outbox: Pick<OutboxDispatcher, 'wake'>;
  /** ValidateToken's answers, from the cache. */
  checks: Pick<TokenChecks, 'check' | 'checkNow' | 'user'>;
  /** Tells every token cache of a change, and waits for them. */
  invalidations: Pick<Invalidations, 'broadcast'>;
}

const requireField = (value: string, field: string): string => {
  if (!value) throw new InvalidArgumentError(`${field} is required`, field);
  return value;
};

/**
 * The client's IP for rate limits and the session record. Only another Veza service
 * (valid API key) may speak for its client; anyone else is the TCP peer, so a client
 * cannot dodge the per-IP limit by making up an address.
 */
function clientIp(ctx: CallContext, reported: string, field: string): string {
  if (!ctx.service) return ctx.peerIp;
  return parseClientIp(reported, field) ?? forwardedIp(ctx) ?? ctx.peerIp;
}

/** Service callers may name their client in `x-forwarded-for` for rpcs without an ip_address field. */
function forwardedIp(ctx: CallContext): string | null {
  if (!ctx.service) return null;
  const value = ctx.metadata.get('x-forwarded-for')[0];
  if (typeof value !== 'string') return null;
  return parseClientIp(value.split(',')[0]?.trim() ?? '', 'x-forwarded-for');
}

/** The user an rpc is about: the request's user_id, or the caller when it is 0. */
function targetUser(ctx: CallContext, requested: number): number {
  if (requested < 0) throw new InvalidArgumentError('user_id must be positive', 'user_id');
  if (requested > 0) return requested;
  if (ctx.user) return ctx.user.userId;
  throw new InvalidArgumentError('user_id is required when the call carries no user token', 'user_id');
}

/** Another user's data needs `permission`, unless a service asks. */
function requireAccess(ctx: CallContext, userId: number, permission: string, what: string): void {
  if (ctx.service || ctx.user?.userId === userId) return;
  if (ctx.user && hasPermission(ctx.user.roles, permission)) return;
  throw new PermissionDeniedError(`${what} of another user needs the ${permission} permission`);
}

function toUserSession(type: string, record: SessionRecord): UserSession {
  return {
    sessionId: record.sessionId,
    userId: record.userId,
    deviceId: record.deviceId,
    ipAddress: record.ipAddress,
    eventType: type,
    createdAt: record.createdAt,
    lastUsedAt: record.lastUsedAt,
    expiresAt: record.expiresAt,
    revoked: record.revokedAt !== null,
    revokedReason: record.revokedReason ?? '',
  };
}

export function createAuthService(deps: AuthServiceDeps): ServiceImplementation<typeof AuthServiceService> {
  const { config, sql, keys, sessions, blobs } = deps;
  const rules = accountRules(config);
  const { checks, invalidations } = deps;
  const sessionDeps = { config, sql, sessions, bus: deps.bus, keys, log: deps.log, invalidations };
  const info = (user: Parameters<typeof toUserInfo>[0]) => toUserInfo(user, blobs);
  /** The caches hold the user's roles and its UserInfo: the change applies everywhere before the call returns. */
  const userChanged = async (user: UserRecord) => {
    await invalidations.broadcast({
      type: 'user-changed',
      userId: user.id,
      user: { username: user.username, email: user.email, roles: [...user.roles] },
    });
  };

  return {
    authenticate: {
      policy: 'public',
      handler: async (request, ctx) => {
        const input = parseInput(loginSchema, {
          email: request.email,
          password: request.password,
          device_id: request.deviceId,
        });
        const ip = clientIp(ctx, request.ipAddress, 'ip_address');
        const account = normalizeEmail(input.email);
        await spend(deps.rateLimiter, rules.loginPerIp, ip, 'login attempts');
        await spend(deps.rateLimiter, rules.loginPerAccount, account, 'login attempts');
        const user = await findUserByEmail(sql, account);
        const valid = user
          ? await verifyPassword(user.passwordHash, input.password)
          : await verifyAgainstDecoy(input.password);
        if (!user || !valid) throw new UnauthenticatedError('invalid email or password');
        await deps.rateLimiter.reset(rules.loginPerAccount, account);
        const tokens = await openSession(sessionDeps, user, { deviceId: input.device_id, ipAddress: ip });
        ctx.log.info({ userId: user.id, sessionId: tokens.sessionId }, 'login');
        return {
          success: true,
          accessToken: tokens.access.token,
          refreshToken: tokens.refreshToken,
          expiresIn: tokens.access.expiresIn,
          userInfo: info(user),
        };
      },
    },

    validateToken: {
      policy: 'public',
      handler: async (request) => {
        const token = requireField(request.token, 'token');
        const hit = checks.checkNow(token);
        const verified = hit?.verified ?? (await checks.check(token));
        const user = hit?.user ?? (await checks.user(verified.userId));
        if (!user) throw new UnauthenticatedError('invalid token: unknown user');
        return {
          valid: true,
          userInfo: user.info,
          expiresAt: verified.expiresAt,
          sessionId: verified.sessionId,
        };
      },
    },

    refreshToken: {
      policy: 'public',
      handler: async (request, ctx) => {
        const token = requireField(request.refreshToken, 'refresh_token');
        if (request.deviceId.length > 128) {
          throw new InvalidArgumentError('device_id must be at most 128 characters', 'device_id');
        }
        const ipAddress = ctx.service ? (parseClientIp(request.ipAddress, 'ip_address') ?? '') : ctx.peerIp;
        const { tokens, user } = await refreshSession(sessionDeps, token, {
          deviceId: request.deviceId,
          ipAddress,
        });
        return {
          success: true,
          accessToken: tokens.access.token,
          refreshToken: tokens.refreshToken,
          expiresIn: tokens.access.expiresIn,
          userInfo: info(user),
        };
      },
    },

    revokeToken: {
      policy: 'public',
      handler: async (request, ctx) => {
        const token = requireField(request.token, 'token');
        const hint = request.tokenTypeHint;
        if (hint !== '' && hint !== 'access_token' && hint !== 'refresh_token') {
          throw new InvalidArgumentError(
            'token_type_hint must be "access_token", "refresh_token" or empty',
            'token_type_hint',
          );
        }
        let sessionId: string | null = null;
        if (hint !== 'refresh_token' && token.split('.').length === 3) {
          try {
            // Signature and expiry only: revoking an already revoked session is a no-op, not an error.
            sessionId = (await verifyAccessToken(token, keys.getKey)).sessionId;
          } catch (error) {
            if (hint === 'access_token') throw error;
          }
        }
        if (!sessionId && hint !== 'access_token')
          sessionId = (await refreshTokenOwner(sql, token))?.sessionId ?? null;
        if (!sessionId) throw new UnauthenticatedError('invalid token');
        const closed = await closeSession(sessionDeps, sessionId, 'logout');
        ctx.log.info({ sessionId, closed }, 'session revoked');
        return { success: true, sessionId };
      },
    },

    getUserInfo: {
      policy: 'jwt-or-api-key',
      handler: async (request, ctx) => {
        const userId = targetUser(ctx, request.userId);
        requireAccess(ctx, userId, 'users:manage', 'reading the profile');
        return { userInfo: info(await getUserById(sql, userId)) };
      },
    },

    streamUserSessions: {
      policy: 'jwt-or-api-key',
      handler: async (request, stream, ctx) => {
        const userId = targetUser(ctx, request.userId);
        if (!ctx.service && ctx.user?.userId !== userId && !ctx.user?.roles.includes('admin')) {
          throw new PermissionDeniedError("streaming another user's sessions needs the admin role");
        }
        const own = ctx.user?.userId === userId ? ctx.user.sessionId : null;
        let live = false;
        const early: Array<{ type: string; session: SessionRecord }> = [];
        let ownRevoked: () => void = () => {};
        const forward = (type: string, session: SessionRecord) => {
          if (ctx.signal.aborted) return;
          stream.write(toUserSession(type, session));
          if (type === 'revoked' && session.sessionId === own) ownRevoked();
        };
        // Subscribe before reading the snapshot so nothing between the two is lost.
        const subscription = deps.bus.subscribe(sessionEventSubject(userId), (payload) => {
          const event = parseSessionEvent(payload);
          if (!event || event.session.userId !== userId) {
            ctx.log.warn('dropped a malformed session event');
            return;
          }
          if (live) forward(event.type, event.session);
          else early.push(event);
        });
        try {
          const ended = new Promise<void>((resolve, reject) => {
            if (ctx.signal.aborted) resolve();
            ctx.signal.addEventListener('abort', () => resolve(), { once: true });
            ownRevoked = () => reject(new UnauthenticatedError('invalid token: session revoked'));
          });
          // On NATS the subscription takes a round trip to become active.
          await subscription.ready;
          for (const session of await sessions.listForUser(userId)) {
            if (isSessionActive(session)) forward('snapshot', session);
          }
          live = true;
          for (const event of early.splice(0)) forward(event.type, event.session);
          await ended;
        } finally {
          subscription.unsubscribe();
        }
      },
    },

    register: {
      policy: 'public',
      handler: async (request, ctx) => {
        await spend(
          deps.rateLimiter,
          rules.registerPerIp,
          clientIp(ctx, '', 'x-forwarded-for'),
          'registrations',
        );
        const user = await createAccount(
          sql,
          {
            email: request.email,
            username: request.username,
            password: request.password,
            first_name: request.firstName,
            last_name: request.lastName,
          },
          { roles: config.DEFAULT_USER_ROLES, confirmationBaseUrl: config.publicUrl },
        );
        deps.outbox.wake();
        ctx.log.info({ userId: user.id }, 'account registered');
        return {
          success: true,
          userInfo: info(user),
          message: `account created; a confirmation link was sent to ${user.email}`,
        };
      },
    },

    confirmEmail: {
      policy: 'public',
      handler: async (request) => {
        const user = await consumeConfirmation(sql, requireField(request.token, 'token'));
        await userChanged(user);
        return { success: true, userInfo: info(user) };
      },
    },

    updateProfile: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const userId = targetUser(ctx, 0);
        const patch = parseInput(profileSchema, {
          display_name: request.displayName,
          bio: request.bio,
          first_name: request.firstName,
          last_name: request.lastName,
        });
        const avatarKey =
          request.avatarData.length > 0
            ? await storeAvatar(blobs, userId, request.avatarData, config.AVATAR_LIMIT_BYTES)
            : undefined;
        const user = await updateProfile(sql, userId, {
          displayName: patch.display_name,
          bio: patch.bio,
          firstName: patch.first_name,
          lastName: patch.last_name,
          avatarKey,
        });
        await userChanged(user);
        return { userInfo: info(user) };
      },
    },

    setUserRole: {
      policy: 'jwt',
      handler: async (request, ctx) => {
        const actorId = targetUser(ctx, 0);
        // The roles in the token may be stale; granting is decided on the stored ones.
        const actor = await getUserById(sql, actorId);
        if (!actor.roles.includes('admin'))
          throw new PermissionDeniedError('changing roles needs the admin role');
        if (request.userId <= 0) throw new InvalidArgumentError('user_id is required', 'user_id');
        const { role } = parseInput(roleInputSchema, { role: request.role });
        const user = await changeRole(sql, {
          userId: request.userId,
          role,
          granted: request.granted,
          actor: { userId: actor.id, label: `user:${actor.username}` },
        });
        await userChanged(user);
        return { userInfo: info(user) };
      },
    },

    revokeUserSessions: {
      policy: 'jwt-or-api-key',
      handler: async (request, ctx) => {
        const userId = targetUser(ctx, request.userId);
        let reason: string;
        if (ctx.user?.userId === userId) {
          reason = 'signed out everywhere';
        } else if (ctx.user) {
          // The roles in the token may be stale; the right is decided on the stored ones.
          const actor = await getUserById(sql, ctx.user.userId);
          if (!actor.roles.includes('admin')) {
            throw new PermissionDeniedError("revoking another user's sessions needs the admin role");
          }
          await getUserById(sql, userId);
          reason = 'revoked by an administrator';
          await audit(sql, { userId: actor.id, label: `user:${actor.username}` }, 'sessions.revoked', {
            type: 'user',
            id: userId,
          });
        } else {
          await getUserById(sql, userId);
          reason = 'revoked by a service';
        }
        const sessionIds = await closeUserSessions(sessionDeps, userId, reason);
        ctx.log.info({ userId, revoked: sessionIds.length, reason }, 'user sessions revoked');
        return { sessionIds };
      },
    },

    getJwks: {
      policy: 'public',
      handler: async () => ({ jwksJson: JSON.stringify(keys.jwks()) }),
    },
  };
}
