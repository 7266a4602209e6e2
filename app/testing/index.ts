/**
 * Composed stacks for tests of more than one role: accounts made through the real control plane,
 * the in-process signaling stack (control plane, edge and media node over one bus), the chat
 * stack on top of it, a cluster of media node processes under one control plane and edge (cascaded
 * fan-out), and the uploads module's track records the worker role reports through.
 */

/** The uploads module's responder for the worker's calls (a real one: give it the worker's bus and database). */
export { serveTrackRecords } from '../../control-plane/test-harness.js';
export { signUpAndIn, TEST_PASSWORD, type TestAccount } from './accounts.js';
export {
  type ChatStack,
  type ChatTestUser,
  type Connected,
  connectChat,
  startChatStack,
  startChatStream,
} from './chat-stack.js';
export {
  type Fan,
  type MediaCluster,
  type StartMediaProcessOptions,
  startMediaCluster,
} from './media-cluster.js';
export {
  type MediaHeartbeats,
  type MediaProcess,
  type MediaProcesses,
  type MediaProcessesOptions,
  type MediaProcessOptions,
  startMediaProcess,
  watchMediaHeartbeats,
  watchMediaProcesses,
} from './media-processes.js';
export { metricValue, type TimedAnswer, timedCall } from './outage-probes.js';
export { type SignalingStack, startSignalingStack, type TestEdge, type TestUser } from './signaling-stack.js';
