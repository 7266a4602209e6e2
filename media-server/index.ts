/**
 * media-server: the mediasoup SFU role of Veza Live. Its public surface is the small media-node API
 * (see api.ts): the edge calls it directly in standalone mode, through NATS request/reply in cluster
 * mode, where the node also announces itself to the control planes (bus-protocol.ts defines that
 * protocol for every side; bus-server.ts is the node's side). Nothing here imports signaling/.
 */
export type {
  ConsumeRequest,
  ConsumeResult,
  ConsumerStats,
  CreateTransportRequest,
  DtlsParameters,
  DtlsState,
  IceCandidate,
  IceParameters,
  MediaNode,
  MediaNodeEventName,
  MediaNodeEvents,
  MediaNodeListener,
  OpenStreamResult,
  PeerStats,
  ProduceRequest,
  ProduceResult,
  ProducerCloseReason,
  ProducerStats,
  RtpCapabilities,
  RtpParameters,
  RtpStreamStats,
  StreamInfo,
  StreamRouterInfo,
  TransportDirection,
  TransportInfo,
  TransportStats,
  TupleStats,
  WorkerDiedEvent,
  WorkerInfo,
  WorkerReplacedEvent,
} from './api.js';
export {
  DEFAULT_MEDIA_CLUSTER,
  type EdgeHeartbeat,
  edgeHeartbeatSchema,
  edgePeerPrefix,
  edgePresenceGroup,
  MEDIA_GATEWAY_EVENTS,
  MEDIA_HEARTBEAT_MS,
  MEDIA_MISSED_HEARTBEATS,
  MEDIA_NODE_ID,
  MEDIA_NODE_METHODS,
  type MediaGatewayEventName,
  type MediaNodeApi,
  type MediaNodeGoodbye,
  type MediaNodeHeartbeat,
  type MediaNodeLoad,
  type MediaNodeMethod,
  type MediaPresenceKind,
  mediaEventFromAnyNode,
  mediaEventSchemas,
  mediaEventSubject,
  mediaNodeGoodbyeSchema,
  mediaNodeHeartbeatSchema,
  mediaPresenceGroup,
  mediaPresenceOf,
  mediaPresenceSubject,
  mediaRequestSchema,
  mediaRequestSubject,
  mediaRequestsOf,
  nodeIdOfEventSubject,
  presenceKindOf,
} from './bus-protocol.js';
export { type MediaNodeService, type ServeMediaNodeOptions, serveMediaNodeOverBus } from './bus-server.js';
export { MEDIA_CODECS, OPUS } from './codecs.js';
export { type IceServer, type IceServerRequest, iceServers, turnRestCredential } from './ice-servers.js';
export type { AudioLevelSettings } from './live-stream.js';
/** The mediasoup module, loaded with the worker binary this project built (benchmarks' bare baseline uses it too). */
export { loadMediasoup, type Mediasoup } from './load-mediasoup.js';
export { type StartMediaNodeOptions, startMediaNode } from './media-node.js';
export { firstNonInternalIPv4, transportListenIp } from './network.js';
