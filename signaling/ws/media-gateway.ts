/**
 * How the edge reaches media nodes: the subset of the media-node API it calls, and the
 * events it forwards to clients, behind one interface with two adapters.
 *
 * - direct: standalone mode, the in-process MediaNode.
 * - bus: cluster mode, request/reply on `media.<nodeId>.<method>` through the EventBus
 *   (NATS), one subject per node so a call reaches the node hosting the stream; events come
 *   back on `media-events.<nodeId>.<event>`. `serveMediaNodeOverBus` is the media side.
 *
 * Every media-node argument and result is JSON already (see media-server/api.ts), so a call
 * crosses the bus as `{ args: [...] }` and the node validates the arguments as it does for
 * in-process callers. The node's errors (VezaErrors) arrive with their code and message.
 */
import { z } from 'zod';
import { InvalidArgumentError, UnavailableError, UnimplementedError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { EventBus, Subscription } from '../../common/ports/event-bus.js';
import type { MediaNode, MediaNodeEventName, MediaNodeEvents } from '../../media-server/index.js';

/** The media-node methods the edge calls. */
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

/** The media-node events the edge turns into notifications. */
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
export type MediaGatewayListener<K extends MediaGatewayEventName> = (
  event: MediaNodeEvents[K],
  nodeId: string,
) => void;

export interface MediaGateway {
  /** The API of the node hosting a stream (StreamInfo.media_node_id); '' means the gateway's default node. */
  node(nodeId: string): MediaNodeApi;
  /** Events from every node the gateway reaches; returns the unsubscribe function. */
  on<K extends MediaGatewayEventName>(event: K, listener: MediaGatewayListener<K>): () => void;
  close(): Promise<void>;
}

/** A node id is one subject token (config.nodeId, e.g. `node-1234`). */
const NODE_ID = /^[A-Za-z0-9_-]{1,128}$/;

export const mediaRequestSubject = (nodeId: string, method: MediaNodeMethod) => `media.${nodeId}.${method}`;
export const mediaEventSubject = (nodeId: string, event: MediaGatewayEventName) =>
  `media-events.${nodeId}.${event}`;

/** Standalone: the one in-process node hosts every stream. */
export function directMediaGateway(node: MediaNode): MediaGateway {
  return {
    node: () => node,
    on(event, listener) {
      const forward = (payload: MediaNodeEvents[typeof event]) => listener(payload, node.nodeId);
      node.on(event, forward);
      return () => {
        node.off(event, forward);
      };
    },
    async close() {
      // The node belongs to whoever started it.
    },
  };
}

const requestSchema = z.object({ args: z.array(z.unknown()).max(4) });

/**
 * Every subscriber validates what it receives: these are the fields the edge reads. A
 * payload from a newer node with more fields passes.
 */
const eventSchemas = {
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

export interface BusMediaGatewayOptions {
  bus: EventBus;
  log: Logger;
  /** Used for streams without a media node id (single media node deployments). */
  defaultNodeId?: string;
  /** Per call; creating a consumer may pipe routers across workers, so allow more than the bus default. */
  timeoutMs?: number;
}

/** Cluster: calls and events through the EventBus. */
export function busMediaGateway(options: BusMediaGatewayOptions): MediaGateway & { ready: Promise<void> } {
  const { bus, log } = options;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const nodes = new Map<string, MediaNodeApi>();
  const listeners = new Map<MediaGatewayEventName, Set<(payload: unknown, nodeId: string) => void>>();
  const subscriptions: Subscription[] = [];

  for (const event of MEDIA_GATEWAY_EVENTS) {
    subscriptions.push(
      bus.subscribe(`media-events.*.${event}`, (payload, subject) => {
        const nodeId = subject.split('.')[1] ?? '';
        const parsed = eventSchemas[event].safeParse(payload);
        if (!parsed.success) {
          log.warn({ subject, issue: parsed.error.issues[0]?.message }, 'ignoring a malformed media event');
          return;
        }
        for (const listener of listeners.get(event) ?? []) listener(parsed.data, nodeId);
      }),
    );
  }

  const proxy = (nodeId: string): MediaNodeApi => {
    if (!NODE_ID.test(nodeId))
      throw new UnavailableError(`media node id "${nodeId}" cannot be reached over the bus`);
    const api: Record<string, (...args: unknown[]) => Promise<unknown>> = {};
    for (const method of MEDIA_NODE_METHODS) {
      api[method] = (...args: unknown[]) =>
        bus.request(mediaRequestSubject(nodeId, method), { args }, { timeoutMs });
    }
    // The node validates arguments; results are the node's own JSON, typed by its API.
    return api as unknown as MediaNodeApi;
  };

  return {
    ready: Promise.all(subscriptions.map((subscription) => subscription.ready)).then(() => undefined),
    node(nodeId) {
      const id = nodeId || options.defaultNodeId;
      if (!id) throw new UnavailableError('the stream has no media node assigned');
      let api = nodes.get(id);
      if (!api) {
        api = proxy(id);
        nodes.set(id, api);
      }
      return api;
    },
    on(event, listener) {
      let set = listeners.get(event);
      if (!set) {
        set = new Set();
        listeners.set(event, set);
      }
      const entry = listener as (payload: unknown, nodeId: string) => void;
      set.add(entry);
      return () => {
        set.delete(entry);
      };
    },
    async close() {
      for (const subscription of subscriptions) subscription.unsubscribe();
      listeners.clear();
    },
  };
}

export interface MediaNodeService {
  /** Resolves once requests and event subscribers can reach the node. */
  ready: Promise<void>;
  close(): void;
}

/** The media side of the bus adapter: answers `media.<nodeId>.*` and publishes the node's events. */
export function serveMediaNodeOverBus(
  bus: EventBus,
  node: MediaNode,
  nodeId: string,
  log: Logger,
): MediaNodeService {
  if (!NODE_ID.test(nodeId)) throw new Error(`media node id "${nodeId}" is not one bus subject token`);
  const allowed = new Set<string>(MEDIA_NODE_METHODS);
  const responder = bus.respond(`media.${nodeId}.*`, async (payload, subject) => {
    const method = subject.slice(subject.lastIndexOf('.') + 1);
    if (!allowed.has(method)) throw new UnimplementedError(`media node ${nodeId} has no method ${method}`);
    const parsed = requestSchema.safeParse(payload);
    if (!parsed.success) throw new InvalidArgumentError(`malformed media request on ${subject}`, 'args');
    const call = node[method as MediaNodeMethod] as (...args: unknown[]) => Promise<unknown>;
    return call.apply(node, parsed.data.args);
  });
  const offs = MEDIA_GATEWAY_EVENTS.map((event) => {
    const forward = (payload: unknown) => {
      bus.publish(mediaEventSubject(nodeId, event), payload).catch((error: unknown) => {
        log.warn({ err: error, event }, 'could not publish a media event');
      });
    };
    node.on(event, forward);
    return () => node.off(event, forward);
  });
  return {
    ready: responder.ready,
    close() {
      responder.unsubscribe();
      for (const off of offs) off();
    },
  };
}
