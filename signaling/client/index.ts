/**
 * The one typed client of the signaling protocol (docs/signaling.md), used by the web app,
 * the tests and the benchmarks. Browser-safe: no Node modules; in Node pass a WebSocket
 * constructor and a mediasoup-client handler (see testing/wrtc.ts for @roamhq/wrtc).
 */

export {
  CHAT_MAX_LENGTH,
  type ChatMessage,
  type ChatRoom,
  CLOSE_CODES,
  type ConsumerOffer,
  type ErrorReason,
  type Method,
  type MethodParams,
  type MethodResults,
  type ModerationItem,
  type NotificationName,
  type Notifications,
  type PeerStats,
  PROTOCOL_VERSION,
  type Role,
  type RoomActivity,
  SIGNALING_PATH,
  type TrackProgress,
  type TransportInfo,
  type UserNotification,
} from '../protocol/index.js';
export { Broadcaster, type BroadcasterEvents } from './broadcaster.js';
export {
  ChatClient,
  type ChatClientEvents,
  type ChatClientOptions,
  type MessageInfo,
  type RoomView,
  type SendOptions,
} from './chat.js';
export {
  type CloseInfo,
  type ConnectionEvents,
  type ConnectionState,
  type ReconnectOptions,
  SignalingConnection,
  type SignalingConnectionOptions,
  SignalingError,
  signalingUrl,
  type TokenProvider,
  type WebSocketConstructor,
  type WebSocketLike,
} from './connection.js';
export { Emitter } from './emitter.js';
export { Listener, type ListenerEvents } from './listener.js';
export type { BaseSessionEvents, SessionOptions, SessionState } from './session.js';
