/**
 * The signaling WebSocket (`/ws`) of the edge and the media-node gateway it calls.
 * The protocol is in ../protocol and docs/signaling.md; the client in ../client.
 */
export { createJwksKeyStore, type JwksKeyStore, type JwksKeyStoreOptions } from './jwks.js';
export {
  type BusMediaGatewayOptions,
  busMediaGateway,
  directMediaGateway,
  type LocalMediaNode,
  type MediaGateway,
} from './media-gateway.js';
export {
  DEFAULT_SIGNALING_LIMITS,
  registerSignaling,
  routerCapabilitiesProvider,
  type SignalingHost,
  type SignalingLimits,
  type SignalingOptions,
  signalingExtension,
} from './server.js';
