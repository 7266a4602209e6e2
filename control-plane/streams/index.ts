/** The stream lifecycle of the control plane: StreamService and the events it publishes. */
export { createStreamService, endLiveStream } from './service.js';
export {
  markRecordingJoinQueued,
  moveRecordingStatus,
  type RecordingStatus,
  type StreamChatRooms,
  type StreamRecording,
  streamRecordingOf,
  streamStateOf,
  unjoinedRecordings,
} from './store.js';
export { listingTextFields } from './validation.js';
