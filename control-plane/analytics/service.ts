/**
 * veza.analytics.AnalyticsService: TrackEvent and GetAnalytics over PostgreSQL.
 * GetMetrics and the two streaming rpcs stay UNIMPLEMENTED until their issue.
 *
 * Who may do what:
 * - TrackEvent: a signed-in user records events about themselves (user_id 0 or their own
 *   id); a service caller (API key, no user token) records any user's, or anonymous ones.
 * - GetAnalytics: a user reads their own events; admins and service callers read everyone's.
 */
import { z } from 'zod';
import { PermissionDeniedError } from '../../common/contracts/index.js';
import { hasPermission } from '../../common/index.js';
import { AnalyticsServiceService, type EventData } from '../../proto/gen/veza/analytics/analytics.js';
import { bindService, type CallContext, type ServiceBinding } from '../grpc/index.js';
import { parseInput } from '../parse-input.js';
import type { Analytics, AnalyticsEvent } from './store.js';

export const EVENT_TYPE = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
export const MAX_PROPERTIES = 50;
const PROPERTY_KEY_MAX = 64;
const PROPERTY_VALUE_MAX = 1024;
/** Clocks drift; an event from further in the future than this is a client bug. */
const FUTURE_SKEW_MS = 5 * 60 * 1000;
/** The newest events GetAnalytics returns; total and counts_by_type cover every match. */
export const EVENTS_LIMIT = 100;

const eventType = z
  .string()
  .regex(EVENT_TYPE, 'event_type must be a lowercase token such as "track.uploaded"');
const userId = z.number().int().min(0, 'user_id must not be negative');

const trackEventSchema = z.object({
  eventType,
  userId,
  properties: z
    .record(
      z
        .string()
        .min(1, 'property names must not be empty')
        .max(PROPERTY_KEY_MAX, `property names are at most ${PROPERTY_KEY_MAX} characters`),
      z.string().max(PROPERTY_VALUE_MAX, `property values are at most ${PROPERTY_VALUE_MAX} characters`),
    )
    .refine((value) => Object.keys(value).length <= MAX_PROPERTIES, `at most ${MAX_PROPERTIES} properties`),
  timestamp: z
    .date()
    .optional()
    .refine(
      (value) => !value || value.getTime() <= Date.now() + FUTURE_SKEW_MS,
      'timestamp is in the future',
    ),
});

const getAnalyticsSchema = z
  .object({
    eventType: z.union([z.literal(''), eventType]),
    userId,
    from: z.date().optional(),
    to: z.date().optional(),
  })
  .refine((value) => !value.from || !value.to || value.from < value.to, {
    message: 'from must be before to',
    path: ['from'],
  });

const actsAsService = (ctx: CallContext): boolean => ctx.service && !ctx.user;

export function toEventData(event: AnalyticsEvent): EventData {
  return {
    eventId: event.id,
    eventType: event.eventType,
    userId: event.userId ?? 0,
    properties: event.properties,
    timestamp: event.occurredAt,
  };
}

export function createAnalyticsService(analytics: Analytics): ServiceBinding {
  return bindService(AnalyticsServiceService, {
    trackEvent: {
      policy: 'jwt-or-api-key',
      handler: async (request, ctx) => {
        const input = parseInput(trackEventSchema, request);
        let subject: number | null = input.userId === 0 ? null : input.userId;
        if (!actsAsService(ctx)) {
          const self = ctx.user?.userId;
          if (!self)
            throw new PermissionDeniedError('recording an event needs a signed-in user or a service key');
          if (subject !== null && subject !== self) {
            throw new PermissionDeniedError('a user may only record events about themselves');
          }
          subject = self;
        }
        const eventId = await analytics.record({
          eventType: input.eventType,
          userId: subject,
          properties: input.properties,
          ...(input.timestamp ? { occurredAt: input.timestamp } : {}),
        });
        return { success: true, eventId };
      },
    },

    getAnalytics: {
      policy: 'jwt-or-api-key',
      handler: async (request, ctx) => {
        const input = parseInput(getAnalyticsSchema, request);
        let subject: number | null = input.userId === 0 ? null : input.userId;
        const seesAll = actsAsService(ctx) || (!!ctx.user && hasPermission(ctx.user.roles, 'users:manage'));
        if (!seesAll) {
          const self = ctx.user?.userId;
          if (!self)
            throw new PermissionDeniedError('reading analytics needs a signed-in user or a service key');
          if (subject !== null && subject !== self) {
            throw new PermissionDeniedError("only admins may read other users' analytics");
          }
          subject = self;
        }
        const summary = await analytics.query({
          eventType: input.eventType || null,
          userId: subject,
          from: input.from ?? null,
          to: input.to ?? null,
          limit: EVENTS_LIMIT,
        });
        return {
          total: summary.total,
          countsByType: summary.countsByType,
          events: summary.events.map(toEventData),
        };
      },
    },
  });
}
