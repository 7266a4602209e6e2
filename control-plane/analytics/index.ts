/**
 * Product and audience analytics: the event store other modules record into, the ingest of the
 * bus's audience events, the roll-ups' store side, and AnalyticsService (plus StreamService's
 * StreamAnalytics).
 */
export { type AudienceStore, createAudienceStore } from './audience-store.js';
export { deleteExpiredAnalyticsEvents } from './events-store.js';
export { type AnalyticsIngest, startAnalyticsIngest } from './ingest.js';
export {
  createAnalyticsService,
  createStreamAnalyticsRpc,
  EVENT_TYPE,
  EVENTS_LIMIT,
  MAX_PROPERTIES,
  toEventData,
} from './service.js';
export {
  type Analytics,
  type AnalyticsEvent,
  type AnalyticsEventInput,
  type AnalyticsQuery,
  type AnalyticsSummary,
  createAnalytics,
} from './store.js';
