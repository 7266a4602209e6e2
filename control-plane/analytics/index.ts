/** Product analytics: the event store other modules record into, and AnalyticsService. */
export { createAnalyticsService, EVENT_TYPE, EVENTS_LIMIT, MAX_PROPERTIES, toEventData } from './service.js';
export {
  type Analytics,
  type AnalyticsEvent,
  type AnalyticsEventInput,
  type AnalyticsQuery,
  type AnalyticsSummary,
  createAnalytics,
} from './store.js';
