/** The stream lifecycle of the control plane: StreamService and the events it publishes. */
export {
  STREAM_ENDED,
  STREAM_LISTENERS,
  STREAM_STARTED,
  type StreamEndedEvent,
  type StreamListenersEvent,
  type StreamStartedEvent,
  streamEndedEventSchema,
  streamListenersEventSchema,
  streamStartedEventSchema,
} from './events.js';
export { LISTENER_TOKEN_TTL_S, type TokenSigningKey } from './listener-token.js';
export { createStreamService, endLiveStream, type StreamServiceDeps, toStreamInfo } from './service.js';
export { DESCRIPTION_MAX, GENRE_MAX, listingTextFields, TITLE_MAX } from './validation.js';
