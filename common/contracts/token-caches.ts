/**
 * The token caches on the EventBus: every process that answers token checks from memory (each
 * control plane for ValidateToken and its JWT interceptor, each edge for the WebSocket handshake
 * and `auth.refresh`) holds login sessions and users in a cache, and a control plane that changes
 * one (logout, refresh-token reuse, an administrator's revocation, a role or profile change) tells
 * every cache here, with an acknowledgement, before its call returns (docs/architecture.md,
 * "Token caches").
 *
 * - `auth.invalidations.<userId>`: what changed (sessions revoked, or the user's account), with
 *   the subject the holder acknowledges on once it applied the change.
 * - `auth.acks.<bootId>.<n>`: a holder's acknowledgement `{ nodeId, bootId }`: the holder it names
 *   refuses the revoked sessions (and holds the new user) from now on.
 * - The holders announce themselves with presence (./presence.ts) in two groups, one per role
 *   (their node ids are unique per role, not across roles: standalone mode runs both in one
 *   process), so a control plane knows whose acknowledgements to wait for.
 *
 * Browser-safe: zod only.
 */
import { z } from 'zod';

export const invalidationSubject = (userId: number): string => `auth.invalidations.${userId}`;
/** Every user's invalidations: a cache holder serves every user. */
export const ALL_INVALIDATIONS = 'auth.invalidations.*';

/** Where the acknowledgements of one broadcast go: `<prefix>.<n>` under a prefix of the revoker's boot. */
export const invalidationAckPrefix = (bootId: string): string => `auth.acks.${bootId}`;

/** Presence groups of the token-cache holders (group `<group>.heartbeat`, ... as in ./presence.ts). */
export const TOKEN_CACHE_GROUPS = {
  controlPlane: 'auth.holders.control-planes',
  edge: 'auth.holders.edges',
} as const;
export type TokenCacheRole = keyof typeof TOKEN_CACHE_GROUPS;

/** An ack subject: dot-separated tokens of letters, digits, _ and - (what the bus accepts). */
const ackSubject = z.string().regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'must be a bus subject');

const sessionsRevokedSchema = z.object({
  type: z.literal('sessions-revoked'),
  userId: z.number().int().positive(),
  sessionIds: z.array(z.string().min(1)).min(1),
  /** Why, as stored on the session ("logout", "refresh token reuse", "revoked by an administrator"). */
  reason: z.string(),
  ack: ackSubject.nullable(),
});

const userChangedSchema = z.object({
  type: z.literal('user-changed'),
  userId: z.number().int().positive(),
  /** The account as it is now, for holders that keep only these fields (edges). */
  user: z.object({
    username: z.string(),
    email: z.string(),
    /** Role names; a holder ignores one it does not know (a newer control plane may have more). */
    roles: z.array(z.string()),
  }),
  ack: ackSubject.nullable(),
});

export const invalidationSchema = z.discriminatedUnion('type', [sessionsRevokedSchema, userChangedSchema]);
export type Invalidation = z.infer<typeof invalidationSchema>;

export const invalidationAckSchema = z.object({ nodeId: z.string(), bootId: z.string() });
export type InvalidationAck = z.infer<typeof invalidationAckSchema>;

/** Another process may have published it: anything malformed is null, dropped (and not acknowledged) by the caller. */
export function parseInvalidation(payload: unknown): Invalidation | null {
  const parsed = invalidationSchema.safeParse(payload);
  return parsed.success ? parsed.data : null;
}
