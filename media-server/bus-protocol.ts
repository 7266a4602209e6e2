/**
 * The media node's protocol on the EventBus (cluster mode), shared by its three parties: the node
 * serving itself (bus-server.ts), the edges calling it (signaling's bus MediaGateway) and the control
 * planes placing new streams on it (control-plane/streams' media-node registry). Every subject and
 * message schema is defined here once.
 *
 * - Calls: request/reply on `media.<nodeId>.<method>`, one subject per node so a call reaches the node
 *   hosting the stream, carrying `{ args: [...] }`. Every argument and result of the media-node API is
 *   JSON already (see api.ts); the node validates the arguments as it does for in-process callers, and
 *   its VezaErrors arrive with their code and message.
 * - Events: `media-events.<nodeId>.<event>`, one payload each.
 * - Presence (the mechanism is common/presence.ts): `media-nodes.<cluster>.heartbeat` every few
 *   seconds with the node's load, `media-nodes.<cluster>.goodbye` when it drains (SIGTERM), and
 *   `media-nodes.<cluster>.probe`, which asks every node to send its heartbeat now (a control plane
 *   that just started). Edges announce themselves the same way on `edges.<cluster>.*`, for the media
 *   nodes, which close the peers of an edge that is gone. `<cluster>` (MEDIA_CLUSTER) keeps
 *   deployments, or test runs, that share a NATS server from placing streams on each other's nodes.
 */
import { z } from 'zod';
import {
  PRESENCE_HEARTBEAT_MS,
  PRESENCE_MISSED_HEARTBEATS,
  type PresenceGoodbye,
  type PresenceHeartbeat,
  type PresenceKind,
  presenceGoodbyeSchema,
  presenceHeartbeatSchema,
  presenceKindOf,
  presenceOf,
  presenceSubject,
} from '../common/presence.js';
import type { MediaNode, MediaNodeEventName } from './api.js';

/** The media-node methods callable over the bus (what the edge calls). */
export const MEDIA_NODE_METHODS = [
  'openStream',
  'closeStream',
  'getRouterRtpCapabilities',
  'createTransport',
  'connectTransport',
  'restartIce',
  'produce',
  'pauseProducer',
  'resumeProducer',
  'consume',
  'resumeConsumer',
  'pauseConsumer',
  'closePeer',
  'getStats',
  'listenerCount',
  'getStreamInfo',
] as const satisfies readonly (keyof MediaNode)[];

export type MediaNodeMethod = (typeof MEDIA_NODE_METHODS)[number];
export type MediaNodeApi = Pick<MediaNode, MediaNodeMethod>;

/** The media-node events published on the bus (what the edge turns into notifications). */
export const MEDIA_GATEWAY_EVENTS = [
  'producerOpened',
  'producerClosed',
  'producerPaused',
  'listenerCount',
  'audioLevel',
  'workerReplaced',
  'streamEnded',
] as const satisfies readonly MediaNodeEventName[];

export type MediaGatewayEventName = (typeof MEDIA_GATEWAY_EVENTS)[number];

/** A node id is one subject token (config.nodeId, e.g. `node-1234`); so is a cluster name. */
export const MEDIA_NODE_ID = /^[A-Za-z0-9_-]{1,128}$/;

export const mediaRequestSubject = (nodeId: string, method: MediaNodeMethod) => `media.${nodeId}.${method}`;
/** Every method of one node: what the node answers. */
export const mediaRequestsOf = (nodeId: string) => `media.${nodeId}.*`;
export const mediaEventSubject = (nodeId: string, event: MediaGatewayEventName) =>
  `media-events.${nodeId}.${event}`;
/** One event from every node: what an edge listens to. */
export const mediaEventFromAnyNode = (event: MediaGatewayEventName) => `media-events.*.${event}`;
/** The node id in a `media-events.<nodeId>.<event>` subject. */
export const nodeIdOfEventSubject = (subject: string) => subject.split('.')[1] ?? '';

export const mediaRequestSchema = z.object({ args: z.array(z.unknown()).max(4) });

/**
 * Every subscriber validates what it receives: these are the fields the edge reads. A payload from a
 * newer node with more fields passes.
 */
export const mediaEventSchemas = {
  producerOpened: z.looseObject({ streamId: z.string(), peerId: z.string(), producerId: z.string() }),
  producerClosed: z.looseObject({
    streamId: z.string(),
    peerId: z.string(),
    producerId: z.string(),
    reason: z.string(),
  }),
  producerPaused: z.looseObject({ streamId: z.string(), producerId: z.string(), paused: z.boolean() }),
  listenerCount: z.looseObject({ streamId: z.string(), count: z.number().int().min(0) }),
  audioLevel: z.looseObject({
    streamId: z.string(),
    producerId: z.string(),
    volumeDbov: z.number(),
    speaking: z.boolean(),
  }),
  workerReplaced: z.looseObject({ affectedStreamIds: z.array(z.string()) }),
  streamEnded: z.looseObject({ streamId: z.string(), reason: z.string() }),
} satisfies Record<MediaGatewayEventName, z.ZodType>;

// Presence (common/presence.ts): which media nodes and edges are alive.

/** The cluster name when MEDIA_CLUSTER is not set. */
export const DEFAULT_MEDIA_CLUSTER = 'default';
/** How often a node announces itself by default; a registry forgets a node after MEDIA_MISSED_HEARTBEATS of its intervals. */
export const MEDIA_HEARTBEAT_MS = PRESENCE_HEARTBEAT_MS;
export const MEDIA_MISSED_HEARTBEATS = PRESENCE_MISSED_HEARTBEATS;

/** Media nodes announce themselves to the control planes here. */
export const mediaPresenceGroup = (cluster: string) => `media-nodes.${cluster}`;
export const mediaPresenceSubject = (cluster: string, kind: PresenceKind) =>
  presenceSubject(mediaPresenceGroup(cluster), kind);
/** Every presence message of a cluster's media nodes, in the order each node sent them. */
export const mediaPresenceOf = (cluster: string) => presenceOf(mediaPresenceGroup(cluster));
export { presenceKindOf };
export type MediaPresenceKind = PresenceKind;

const count = z.number().int().min(0);

export const mediaNodeHeartbeatSchema = presenceHeartbeatSchema.extend({
  nodeId: z.string().regex(MEDIA_NODE_ID),
  /** Live mediasoup workers; a node with none cannot host a stream. */
  workers: count,
  routers: count,
  transports: count,
  producers: count,
  consumers: count,
  /** consumers + transports over every worker: what placement compares (per worker). */
  load: count,
});
export type MediaNodeHeartbeat = z.infer<typeof mediaNodeHeartbeatSchema>;
/** What a media node adds to its heartbeat (its load). */
export interface MediaNodeLoad {
  workers: number;
  routers: number;
  transports: number;
  producers: number;
  consumers: number;
  load: number;
}

export const mediaNodeGoodbyeSchema = presenceGoodbyeSchema;
export type MediaNodeGoodbye = PresenceGoodbye;

/**
 * Edges announce themselves to the media nodes here, with the same heartbeats (no extra fields).
 * A media node closes the peers of an edge it forgets (missed heartbeats, a restart, a goodbye):
 * mediasoup has no ICE consent timeout, so nothing else would ever free them.
 */
export const edgePresenceGroup = (cluster: string) => `edges.${cluster}`;
export const edgeHeartbeatSchema = presenceHeartbeatSchema;
export type EdgeHeartbeat = PresenceHeartbeat;
/**
 * Every media peer id an edge makes starts with this (then `<connectionId>:<n>`): the media node
 * finds an edge's peers by it, and the boot id keeps a restarted edge's ids apart from its previous run's.
 */
export const edgePeerPrefix = (edgeId: string, bootId: string) => `${edgeId}:${bootId}:`;
