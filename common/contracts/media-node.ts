/**
 * The media node's protocol, shared by its three parties: the node serving itself
 * (media-server's bus server), the edges calling it (signaling's MediaGateway) and the control
 * planes placing streams on it (control-plane/streams' media-node registry). Every subject,
 * argument, result and event is defined here once, and every side parses what it receives.
 *
 * - Calls: request/reply on `media.<nodeId>.<method>`, one subject per node so a call reaches the
 *   node hosting the stream, carrying `{ args: [...] }`. The node parses the arguments with
 *   `MEDIA_NODE_CALLS[method].args` (in-process callers go through the same parse), the caller
 *   parses the reply with `.result`; VezaErrors arrive with their code, message and details (the
 *   failures a caller acts on name their `MEDIA_FAILURE` reason).
 * - Events: `media-events.<nodeId>.<event>`, one payload each (`MEDIA_EVENT_SCHEMAS`).
 * - Presence (the mechanism is common/presence.ts): `media-nodes.<cluster>.heartbeat` every few
 *   seconds with the node's load, `.goodbye` when it drains (SIGTERM), and `.probe`, which asks
 *   every node to send its heartbeat now (a control plane that just started). Edges announce
 *   themselves the same way on `edges.<cluster>.*`, for the media nodes, which close the peers of
 *   an edge that is gone. `<cluster>` (MEDIA_CLUSTER) keeps deployments, or test runs, that share
 *   a NATS server from placing streams on each other's nodes.
 */
import { z } from 'zod';
import {
  callerIdSchema,
  dtlsParametersSchema,
  dtlsStateSchema,
  iceCandidateSchema,
  iceParametersSchema,
  iceStateSchema,
  objectIdSchema,
  rtpCapabilitiesSchema,
  rtpParametersSchema,
} from './mediasoup.js';
import { type PresenceKind, presenceHeartbeatSchema, presenceOf, presenceSubject } from './presence.js';

const count = z.number().int().min(0);
/** A JSON reply carries `null` where the method returns nothing. */
const nothing = z.union([z.null(), z.undefined()]).transform((): void => undefined);

// The shapes of arguments and results.

export const transportDirectionSchema = z.enum(['send', 'recv']);
export type TransportDirection = z.infer<typeof transportDirectionSchema>;

export const createTransportRequestSchema = z.object({
  streamId: callerIdSchema,
  peerId: callerIdSchema,
  direction: transportDirectionSchema,
});
export type CreateTransportRequest = z.input<typeof createTransportRequestSchema>;

export const produceRequestSchema = z.object({
  transportId: objectIdSchema,
  peerId: callerIdSchema,
  kind: z.literal('audio', { error: 'only audio producers are supported' }),
  rtpParameters: rtpParametersSchema,
});
export type ProduceRequest = z.input<typeof produceRequestSchema>;

export const consumeRequestSchema = z.object({
  transportId: objectIdSchema,
  peerId: callerIdSchema,
  rtpCapabilities: rtpCapabilitiesSchema,
});
export type ConsumeRequest = z.input<typeof consumeRequestSchema>;

export const joinRoleSchema = z.enum(['broadcaster', 'listener']);

/**
 * Places a peer in a stream in one call: opens the stream (idempotent), creates the peer's
 * transport (send on the origin for the broadcaster; recv where placement puts a listener) and,
 * for a listener that gives its device's capabilities, its paused consumer.
 */
export const joinStreamRequestSchema = z.object({
  streamId: callerIdSchema,
  peerId: callerIdSchema,
  role: joinRoleSchema,
  /** A listener's device capabilities: with them the node creates the consumer in the same call. */
  rtpCapabilities: rtpCapabilitiesSchema.optional(),
  /**
   * Placement put the listener on a node that must first pull the stream from this carrier
   * (common/contracts/listener-placement.ts): the node pulls it (pullStream) before it places the
   * listener, unless it already carries it from there.
   */
  pullFrom: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,128}$/)
    .optional(),
});
export type JoinStreamRequest = z.input<typeof joinStreamRequestSchema>;

export const openStreamResultSchema = z.object({
  streamId: z.string(),
  workerIndex: count,
  rtpCapabilities: rtpCapabilitiesSchema,
});
export type OpenStreamResult = z.infer<typeof openStreamResultSchema>;

export const transportInfoSchema = z.object({
  transportId: objectIdSchema,
  iceParameters: iceParametersSchema,
  iceCandidates: z.array(iceCandidateSchema).max(16),
  /** The node's side: role and its certificate fingerprints. */
  dtlsParameters: z.looseObject({
    role: z.enum(['auto', 'client', 'server']).optional(),
    fingerprints: dtlsParametersSchema.shape.fingerprints,
  }),
  workerIndex: count,
});
export type TransportInfo = z.infer<typeof transportInfoSchema>;

export const produceResultSchema = z.object({ producerId: objectIdSchema });
export type ProduceResult = z.infer<typeof produceResultSchema>;

/** A consumer is created paused: the client resumes it (resumeConsumer) once its track is wired. */
export const consumeResultSchema = z.object({
  consumerId: objectIdSchema,
  producerId: objectIdSchema,
  kind: z.literal('audio'),
  rtpParameters: rtpParametersSchema,
  producerPaused: z.boolean(),
});
export type ConsumeResult = z.infer<typeof consumeResultSchema>;

/**
 * No router capabilities here: they are ROUTER_RTP_CAPABILITIES on every router (a test holds
 * the node to it), so a join does not carry and parse them across the bus each time.
 */
export const joinStreamResultSchema = z.object({
  /** Listeners of the stream on this node, the joining one included once it consumes. */
  listenerCount: count,
  transport: transportInfoSchema,
  /**
   * The listener's paused consumer; null for a broadcaster, for a listener without capabilities,
   * or when nobody produces right now (the `noAudio` case: consume after the producer opens).
   */
  consumer: consumeResultSchema.nullable(),
});
export type JoinStreamResult = z.infer<typeof joinStreamResultSchema>;

const tupleStatsSchema = z.object({
  localIp: z.string(),
  localPort: z.number().int(),
  remoteIp: z.string().nullable(),
  remotePort: z.number().int().nullable(),
  protocol: z.enum(['udp', 'tcp']),
});

export const transportStatsSchema = z.object({
  transportId: z.string(),
  direction: transportDirectionSchema,
  workerIndex: count,
  iceState: iceStateSchema,
  dtlsState: dtlsStateSchema,
  selectedTuple: tupleStatsSchema.nullable(),
  bytesReceived: count,
  bytesSent: count,
  recvBitrateBps: z.number().min(0),
  sendBitrateBps: z.number().min(0),
  availableOutgoingBitrateBps: z.number().nullable(),
});
export type TransportStats = z.infer<typeof transportStatsSchema>;
export type TupleStats = z.infer<typeof tupleStatsSchema>;

const rtpStreamStatsShape = {
  /** mediasoup's 0..10 quality score of the RTP stream. */
  score: z.number().min(0).max(10),
  roundTripTimeMs: z.number().nullable(),
  /** Fraction of packets lost in the last RTCP report interval, 0..1. */
  packetLoss: z.number().min(0).max(1),
  packetsLost: z.number().int(),
  packetCount: count,
  byteCount: count,
  bitrateBps: z.number().min(0),
};
export const rtpStreamStatsSchema = z.object(rtpStreamStatsShape);
export type RtpStreamStats = z.infer<typeof rtpStreamStatsSchema>;

export const consumerStatsSchema = z.object({
  ...rtpStreamStatsShape,
  consumerId: z.string(),
  producerId: z.string(),
  paused: z.boolean(),
  producerPaused: z.boolean(),
  /** Score of the stream arriving from the broadcaster (0..10); low means the problem is upstream. */
  producerScore: z.number().min(0).max(10),
});
export type ConsumerStats = z.infer<typeof consumerStatsSchema>;

export const producerStatsSchema = z.object({
  ...rtpStreamStatsShape,
  producerId: z.string(),
  paused: z.boolean(),
  jitter: z.number().min(0),
});
export type ProducerStats = z.infer<typeof producerStatsSchema>;

export const peerStatsSchema = z.object({
  peerId: z.string(),
  streamId: z.string(),
  transports: z.array(transportStatsSchema),
  producer: producerStatsSchema.nullable(),
  consumers: z.array(consumerStatsSchema),
});
export type PeerStats = z.infer<typeof peerStatsSchema>;

/** The most peers one qualityStats call asks about: an edge's sampling tick asks in slices of it. */
export const QUALITY_STATS_MAX_PEERS = 500;

/** The peers of one qualityStats call. */
export const qualityStatsPeersSchema = z.array(callerIdSchema).min(1).max(QUALITY_STATS_MAX_PEERS);

/** What an audience sample needs of a peer: its producer's or consumers' stats, not its transports'. */
export const peerQualitySchema = peerStatsSchema.omit({ transports: true });
export type PeerQuality = z.infer<typeof peerQualitySchema>;

export const streamRouterInfoSchema = z.object({
  routerId: z.string(),
  workerIndex: count,
  role: z.enum(['origin', 'fanout']),
  listeners: count,
});
export type StreamRouterInfo = z.infer<typeof streamRouterInfoSchema>;

export const streamInfoSchema = z.object({
  streamId: z.string(),
  producerId: z.string().nullable(),
  broadcasterPeerId: z.string().nullable(),
  producerPaused: z.boolean(),
  listenerCount: count,
  routers: z.array(streamRouterInfoSchema),
});
export type StreamInfo = z.infer<typeof streamInfoSchema>;

/**
 * Cascaded fan-out: a node that must serve a stream it does not carry pulls it from a node that
 * does, over a mediasoup PipeTransport pair (plain RTP with RTX/NACK between the two nodes'
 * announced addresses). The destination opens its side first and asks the source with `pipeOut`;
 * the source connects to it, consumes the stream's producer and answers with its own side and the
 * consumer's RTP parameters; the destination connects back and produces with the same producer id.
 */
export const pullStreamRequestSchema = z.object({
  streamId: callerIdSchema,
  /** A node that carries the stream (its origin or a relay), as placement chose it. */
  sourceNodeId: z.string().regex(/^[A-Za-z0-9_-]{1,128}$/),
  /**
   * The source's producer as the source knows it: a source whose broadcaster produced again asks
   * its downstream nodes to pull the new one. Absent: a pipe that is alive is kept.
   */
  producerId: objectIdSchema.optional(),
  /**
   * A re-attachment: the node's parent in the stream's tree died, and this was its id. The pull
   * happens only while the node still pulls from that dead parent; once it was re-attached (by
   * another control plane that saw the same death, possibly under another carrier) the ask is
   * answered with where it pulls from now, so a death re-attaches each child once.
   */
  replacing: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,128}$/)
    .optional(),
});
export type PullStreamRequest = z.input<typeof pullStreamRequestSchema>;

export const pullStreamResultSchema = z.object({
  producerId: objectIdSchema,
  /** The node the stream is pulled from now (it may already have been pulled from another one). */
  upstream: z.string(),
});
export type PullStreamResult = z.infer<typeof pullStreamResultSchema>;

const pipeTupleShape = {
  ip: z.string().min(1).max(64),
  port: z.number().int().min(1).max(65535),
};

export const pipeOutRequestSchema = z.object({
  streamId: callerIdSchema,
  toNodeId: z.string().regex(/^[A-Za-z0-9_-]{1,128}$/),
  /** The destination's pipe transport, where the source sends. */
  ...pipeTupleShape,
});
export type PipeOutRequest = z.input<typeof pipeOutRequestSchema>;

export const pipeOutResultSchema = z.object({
  /** The source's pipe transport: what the destination closes with closePipe when it lets go. */
  pipeId: objectIdSchema,
  ...pipeTupleShape,
  producerId: objectIdSchema,
  rtpParameters: rtpParametersSchema,
  producerPaused: z.boolean(),
});
export type PipeOutResult = z.infer<typeof pipeOutResultSchema>;

/**
 * Every method callable over the bus (what the edge calls): its positional arguments, parsed by
 * the node, and its result, parsed by the caller.
 */
export const MEDIA_NODE_CALLS = {
  /** Opens the stream's origin router (idempotent: an open stream is returned as is). */
  openStream: { args: z.tuple([callerIdSchema]), result: openStreamResultSchema },
  /**
   * Everything a join needs in one call (what openStream + createTransport + consume +
   * listenerCount did in four); fails as a whole, leaving nothing behind, e.g. with
   * resource_exhausted (`atCapacity`) when no router of the node has room for a listener.
   */
  joinStream: { args: z.tuple([joinStreamRequestSchema]), result: joinStreamResultSchema },
  /** Closes the stream and everything in it; idempotent for a stream that has ended. */
  closeStream: { args: z.tuple([callerIdSchema]), result: nothing },
  getRouterRtpCapabilities: { args: z.tuple([callerIdSchema]), result: rtpCapabilitiesSchema },
  /** A send transport lands on the origin router; a recv transport where placement puts the listener. */
  createTransport: { args: z.tuple([createTransportRequestSchema]), result: transportInfoSchema },
  connectTransport: { args: z.tuple([objectIdSchema, dtlsParametersSchema]), result: nothing },
  restartIce: {
    args: z.tuple([objectIdSchema]),
    result: z.object({ iceParameters: iceParametersSchema }),
  },
  produce: { args: z.tuple([produceRequestSchema]), result: produceResultSchema },
  pauseProducer: { args: z.tuple([objectIdSchema]), result: nothing },
  resumeProducer: { args: z.tuple([objectIdSchema]), result: nothing },
  consume: { args: z.tuple([consumeRequestSchema]), result: consumeResultSchema },
  resumeConsumer: { args: z.tuple([objectIdSchema]), result: nothing },
  pauseConsumer: { args: z.tuple([objectIdSchema]), result: nothing },
  /** Closes the peer's transports, producer and consumers; idempotent. */
  closePeer: { args: z.tuple([callerIdSchema]), result: nothing },
  getStats: { args: z.tuple([callerIdSchema]), result: peerStatsSchema },
  /**
   * The quality stats of many peers in one call (an edge's audience sampling tick): a peer that has
   * left, or whose stats are not available right now, is left out of the answer.
   */
  qualityStats: {
    args: z.tuple([qualityStatsPeersSchema]),
    result: z.array(peerQualitySchema),
  },
  listenerCount: { args: z.tuple([callerIdSchema]), result: count },
  getStreamInfo: { args: z.tuple([callerIdSchema]), result: streamInfoSchema },
  /** Makes the stream consumable on this node by pulling it from `sourceNodeId` (idempotent while the pipe lives). */
  pullStream: { args: z.tuple([pullStreamRequestSchema]), result: pullStreamResultSchema },
  /** Source side of pullStream: pipes the stream's producer to the destination's address. */
  pipeOut: { args: z.tuple([pipeOutRequestSchema]), result: pipeOutResultSchema },
  /** The destination no longer needs the pipe (idempotent). */
  closePipe: { args: z.tuple([objectIdSchema]), result: nothing },
} as const;

export type MediaNodeMethod = keyof typeof MEDIA_NODE_CALLS;
export const MEDIA_NODE_METHODS = Object.keys(MEDIA_NODE_CALLS) as MediaNodeMethod[];

/** The node's callable API, typed from the table above: what an edge holds for the node of a stream. */
export type MediaNodeApi = {
  [M in MediaNodeMethod]: (
    ...args: z.input<(typeof MEDIA_NODE_CALLS)[M]['args']>
  ) => Promise<z.output<(typeof MEDIA_NODE_CALLS)[M]['result']>>;
};

/**
 * The failures of a media-node call that its caller acts on, as the VezaError's `details.reason`
 * (which crosses the bus with the code and message): the edge turns them into the protocol's
 * reasons without asking the node again.
 */
export const MEDIA_FAILURE = {
  /** The stream has ended on the node (any call about it, its transports included). */
  streamEnded: 'stream_ended',
  /** `consume`: the stream is live but nobody produces right now. */
  noAudio: 'no_audio',
  /** `joinStream` / `createTransport`: every router the node could give the stream is full. */
  atCapacity: 'at_capacity',
  /** `joinStream` / `createTransport` / `pullStream`: the node is draining and takes no new listeners. */
  draining: 'node_draining',
} as const;
export type MediaFailureReason = (typeof MEDIA_FAILURE)[keyof typeof MEDIA_FAILURE];

/** Why a producer closed. */
export const PRODUCER_CLOSE_REASONS = [
  'closed',
  'replaced',
  'peer-left',
  'transport-closed',
  'worker-died',
  'stream-ended',
  /** The edge the peer came through is gone (its heartbeats stopped): see the node's closePeersOf. */
  'edge-lost',
] as const;
export type ProducerCloseReason = (typeof PRODUCER_CLOSE_REASONS)[number];

/** The media-node events published on the bus (what the edge turns into notifications). */
export const MEDIA_EVENT_SCHEMAS = {
  producerOpened: z.object({ streamId: z.string(), peerId: z.string(), producerId: z.string() }),
  producerClosed: z.object({
    streamId: z.string(),
    peerId: z.string(),
    producerId: z.string(),
    reason: z.enum(PRODUCER_CLOSE_REASONS),
  }),
  producerPaused: z.object({ streamId: z.string(), producerId: z.string(), paused: z.boolean() }),
  listenerCount: z.object({ streamId: z.string(), count }),
  /** For the broadcaster's meter: volume in dBov (-127 silent .. 0 full scale), every interval while not silent. */
  audioLevel: z.object({
    streamId: z.string(),
    producerId: z.string(),
    volumeDbov: z.number(),
    speaking: z.boolean(),
  }),
  /** The dead worker's streams have been rebuilt: their clients should re-create transports, produce and consume. */
  workerReplaced: z.object({
    oldWorkerIndex: count,
    oldPid: count,
    newPid: count,
    /** Streams that had a router on the dead worker; their routers have been re-created. */
    affectedStreamIds: z.array(z.string()),
  }),
  /**
   * A relay node pulls the stream from another carrier now (its upstream died and placement
   * re-attached it): the producer it relayed was replaced, which closed its listeners' consumers
   * there; they consume the new one (same producer id, as on every node of the tree).
   */
  relayReplaced: z.object({ streamId: z.string(), producerId: z.string(), upstream: z.string() }),
  /** The stream was closed (closeStream or node shutdown): every transport of it is gone. */
  streamEnded: z.object({
    streamId: z.string(),
    /** relay-released: a relay node let go of a stream nobody listened to there any more. */
    reason: z.enum(['closed', 'node-closed', 'relay-released']),
  }),
} as const;

export type MediaGatewayEventName = keyof typeof MEDIA_EVENT_SCHEMAS;
export const MEDIA_GATEWAY_EVENTS = Object.keys(MEDIA_EVENT_SCHEMAS) as MediaGatewayEventName[];
export type MediaGatewayEvents = { [E in MediaGatewayEventName]: z.infer<(typeof MEDIA_EVENT_SCHEMAS)[E]> };

/** A node id is one subject token (config.nodeId, e.g. `node-1234`); so is a cluster name. */
export const MEDIA_NODE_ID = /^[A-Za-z0-9_-]{1,128}$/;

export const mediaRequestSubject = (nodeId: string, method: MediaNodeMethod) => `media.${nodeId}.${method}`;
/** Every method of one node: what the node answers. */
export const mediaRequestsOf = (nodeId: string) => `media.${nodeId}.*`;
/** The method of a `media.<nodeId>.<method>` subject. */
export const methodOfRequestSubject = (subject: string) => subject.slice(subject.lastIndexOf('.') + 1);
export const mediaEventSubject = (nodeId: string, event: MediaGatewayEventName) =>
  `media-events.${nodeId}.${event}`;
/** One event from every node: what an edge listens to. */
export const mediaEventFromAnyNode = (event: MediaGatewayEventName) => `media-events.*.${event}`;
/** The node id in a `media-events.<nodeId>.<event>` subject. */
export const nodeIdOfEventSubject = (subject: string) => subject.split('.')[1] ?? '';

export const mediaRequestSchema = z.object({ args: z.array(z.unknown()).max(4) });

// Presence: which media nodes and edges are alive.

/** The cluster name when MEDIA_CLUSTER is not set. */
export const DEFAULT_MEDIA_CLUSTER = 'default';

/** Media nodes announce themselves to the control planes here. */
export const mediaPresenceGroup = (cluster: string) => `media-nodes.${cluster}`;
export const mediaPresenceSubject = (cluster: string, kind: PresenceKind) =>
  presenceSubject(mediaPresenceGroup(cluster), kind);
/** Every presence message of a cluster's media nodes, in the order each node sent them. */
export const mediaPresenceOf = (cluster: string) => presenceOf(mediaPresenceGroup(cluster));

/** What a media node adds to its heartbeat (its load). */
export const mediaNodeLoadSchema = z.object({
  /** Live mediasoup workers; a node with none cannot host a stream. */
  workers: count,
  routers: count,
  transports: count,
  producers: count,
  consumers: count,
  /** consumers + transports over every worker: what placement compares (per worker). */
  load: count,
  // What listener placement reads (cascaded fan-out). Defaults keep a node of the previous version readable.
  /** Listeners (recv transports) on the node, every stream. */
  listeners: count.default(0),
  /** MEDIA_NODE_MAX_LISTENERS: the node refuses listeners beyond it. 0: not announced. */
  maxListeners: count.default(0),
  /** MEDIA_NODE_ZONE: an operator's zone or region label ('' when unset). */
  zone: z.string().max(64).default(''),
  /** The node drains: it keeps serving, takes no new listener. */
  draining: z.boolean().default(false),
  /** The streams the node carries, with where each comes from (null: the broadcaster is here). */
  streams: z
    .array(
      z.object({
        streamId: z.string(),
        listeners: count,
        upstream: z.string().nullable(),
        /** Nodes this one pipes the stream to. */
        downstream: z.array(z.string()).max(1024),
      }),
    )
    .max(10_000)
    .default([]),
});
export type MediaNodeLoad = z.infer<typeof mediaNodeLoadSchema>;

export const mediaNodeHeartbeatSchema = presenceHeartbeatSchema.extend({
  nodeId: z.string().regex(MEDIA_NODE_ID),
  ...mediaNodeLoadSchema.shape,
});
export type MediaNodeHeartbeat = z.infer<typeof mediaNodeHeartbeatSchema>;

/**
 * Edges announce themselves to the media nodes here, with plain heartbeats. A media node closes the
 * peers of an edge it forgets (missed heartbeats, a restart, a goodbye): mediasoup has no ICE
 * consent timeout, so nothing else would ever free them.
 */
export const edgePresenceGroup = (cluster: string) => `edges.${cluster}`;
export const edgeHeartbeatSchema = presenceHeartbeatSchema;
/**
 * Every media peer id an edge makes starts with this (then `<connectionId>:<n>`): the media node
 * finds an edge's peers by it, and the boot id keeps a restarted edge's ids apart from its previous run's.
 */
export const edgePeerPrefix = (edgeId: string, bootId: string) => `${edgeId}:${bootId}:`;
