/**
 * media-server: the mediasoup SFU role of Veza Live. Its public surface is the small media-node API
 * (see api.ts): the edge calls it directly in standalone mode, through NATS request/reply in cluster
 * mode, where the node also announces itself to the control planes (common/contracts/media-node.ts defines that
 * protocol for every side; bus-server.ts is the node's side). Nothing here imports signaling/.
 */
export type {
  DtlsParameters,
  DtlsState,
  IceCandidate,
  IceParameters,
  MediaNode,
  MediaNodeEventName,
  MediaNodeEvents,
  MediaNodeListener,
  RtpCapabilities,
  RtpParameters,
  WorkerDiedEvent,
  WorkerInfo,
  WorkerReplacedEvent,
} from './api.js';
export { type MediaNodeService, type ServeMediaNodeOptions, serveMediaNodeOverBus } from './bus-server.js';
export { MEDIA_CODECS, OPUS } from './codecs.js';
export type { AudioLevelSettings } from './live-stream.js';
/** The mediasoup module, loaded with the worker binary this project built (benchmarks' bare baseline uses it too). */
export { loadMediasoup, type Mediasoup } from './load-mediasoup.js';
export { type StartMediaNodeOptions, startMediaNode } from './media-node.js';
export { firstNonInternalIPv4, transportListenIp } from './network.js';
export { type MediaNodePeers, mediaNodePeersOverBus } from './node-peers.js';
