/** The stream lifecycle of the control plane: StreamService and the events it publishes. */
export { createStreamService, endLiveStream } from './service.js';
export {
  moveRecordingStatus,
  type RecordingStatus,
  type StreamChatRooms,
  type StreamRecording,
  streamRecordingOf,
  streamStateOf,
} from './store.js';
export { listingTextFields } from './validation.js';
