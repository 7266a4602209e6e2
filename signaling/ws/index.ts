/**
 * The signaling WebSocket (`/ws`) of the edge and the media-node gateway it calls.
 * The protocol is in ../protocol and docs/signaling.md; the client in ../client.
 *
 * Inside, one concern per file, each depending only on the narrow shapes of those below it:
 * - server.ts: the uWS endpoint (handshake, frames, close), wiring each connection's parts;
 * - connection.ts: one connection's requests (queue, rate-budget.ts, the token lifetime's check),
 *   routed to token-lifetime.ts, ./chat or media-session.ts; socket.ts: the socket they share;
 * - media-session.ts: the media methods, with their ownership checks;
 * - edge-streams.ts assembles the edge's streams: stream-registry.ts (who is in which stream,
 *   the stream topics), stream-liveness.ts (grace periods, adoption, the broadcaster claim,
 *   ended and moved streams), media-fanout.ts (media-node events as notifications) and
 *   stream-lookup.ts (a stream as a connection may see it).
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
} from './server.js';
