/** The stream lifecycle of the control plane: StreamService and the events it publishes. */
export { createStreamService, endLiveStream } from './service.js';
export { type StreamChatRooms, streamStateOf } from './store.js';
export { listingTextFields } from './validation.js';
