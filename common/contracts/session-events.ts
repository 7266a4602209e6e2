/**
 * Login sessions on the EventBus: the control plane publishes `auth.sessions.<userId>` when a
 * session is created, refreshed or revoked (logout, refresh-token reuse, an admin action). Edges
 * close a revoked session's connections; StreamUserSessions streams them to clients.
 */
import { z } from 'zod';

export const sessionEventSubject = (userId: number): string => `auth.sessions.${userId}`;
/** Every user's session events, for an edge that serves many users. */
export const ALL_SESSION_EVENTS = 'auth.sessions.*';

export const SESSION_EVENT_TYPES = ['created', 'refreshed', 'revoked'] as const;
export type SessionEventType = (typeof SESSION_EVENT_TYPES)[number];

const isoDate = z.iso.datetime().transform((value) => new Date(value));

export const sessionEventSchema = z.object({
  type: z.enum(SESSION_EVENT_TYPES),
  session: z.object({
    sessionId: z.string().min(1),
    userId: z.number().int(),
    deviceId: z.string(),
    ipAddress: z.string(),
    createdAt: isoDate,
    lastUsedAt: isoDate,
    expiresAt: isoDate,
    revokedAt: isoDate.nullable(),
    revokedReason: z.string().nullable(),
  }),
});
/** The wire form (dates as ISO 8601 strings). */
export type SessionEventPayload = z.input<typeof sessionEventSchema>;
/** As read (dates as Dates). */
export type SessionEvent = z.output<typeof sessionEventSchema>;

/** Another process may have published it: anything malformed is null, dropped by the caller. */
export function parseSessionEvent(payload: unknown): SessionEvent | null {
  const parsed = sessionEventSchema.safeParse(payload);
  return parsed.success ? parsed.data : null;
}
