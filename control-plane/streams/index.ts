/** The stream lifecycle of the control plane: StreamService and the events it publishes. */
export { LISTENER_TOKEN_TTL_S, type TokenSigningKey } from './listener-token.js';
export { createStreamService, endLiveStream, type StreamServiceDeps, toStreamInfo } from './service.js';
export { type StreamChatRooms, streamStateOf } from './store.js';
export { DESCRIPTION_MAX, GENRE_MAX, listingTextFields, TITLE_MAX } from './validation.js';
