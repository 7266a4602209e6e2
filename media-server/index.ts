/**
 * media-server: the mediasoup SFU role of Veza Live. Its public surface is the small media-node API
 * (see api.ts): the edge calls it directly in standalone mode, through NATS request/reply in cluster
 * mode. Nothing here imports signaling/.
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
export { MEDIA_CODECS, OPUS } from './codecs.js';
export { type IceServer, iceServers } from './ice-servers.js';
export type { AudioLevelSettings } from './live-stream.js';
export { type StartMediaNodeOptions, startMediaNode } from './media-node.js';
export { firstNonInternalIPv4, transportListenIp } from './network.js';
