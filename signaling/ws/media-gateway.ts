/**
 * How the edge reaches media nodes: the subset of the media-node API it calls, and the
 * events it forwards to clients, behind one interface with two adapters.
 *
 * - direct: standalone mode, the in-process MediaNode.
 * - bus: cluster mode, request/reply on `media.<nodeId>.<method>` through the EventBus
 *   (NATS), one subject per node so a call reaches the node hosting the stream; events come
 *   back on `media-events.<nodeId>.<event>`. The subjects and message schemas are the media
 *   contract's (common/contracts/media-node.ts); the serving side is the media server's.
 *
 * The node's errors (VezaErrors) arrive with their code, message and details, so the edge reads
 * a failure's `MEDIA_FAILURE` reason the same way in both modes.
 */
import {
  MEDIA_EVENT_SCHEMAS,
  MEDIA_GATEWAY_EVENTS,
  MEDIA_NODE_CALLS,
  MEDIA_NODE_ID,
  MEDIA_NODE_METHODS,
  type MediaGatewayEventName,
  type MediaGatewayEvents,
  type MediaNodeApi,
  mediaEventFromAnyNode,
  mediaRequestSubject,
  nodeIdOfEventSubject,
  UnavailableError,
  VezaError,
} from '../../common/contracts/index.js';
import { type Breaker, createBreaker, type Logger } from '../../common/index.js';
import type { EventBus, Subscription } from '../../common/ports/index.js';

export type MediaGatewayListener<K extends MediaGatewayEventName> = (
  event: MediaGatewayEvents[K],
  nodeId: string,
) => void;

/** An in-process media node (standalone mode): its API and its events. */
export interface LocalMediaNode extends MediaNodeApi {
  readonly nodeId: string;
  on<K extends MediaGatewayEventName>(event: K, listener: (event: MediaGatewayEvents[K]) => void): unknown;
  off<K extends MediaGatewayEventName>(event: K, listener: (event: MediaGatewayEvents[K]) => void): unknown;
}

export interface MediaGateway {
  /** The API of the node hosting a stream (StreamInfo.media_node_id); '' means the gateway's default node. */
  node(nodeId: string): MediaNodeApi;
  /** Events from every node the gateway reaches; returns the unsubscribe function. */
  on<K extends MediaGatewayEventName>(event: K, listener: MediaGatewayListener<K>): () => void;
  close(): Promise<void>;
}

/** Standalone: the one in-process node hosts every stream. */
export function directMediaGateway(node: LocalMediaNode): MediaGateway {
  return {
    node: () => node,
    on(event, listener) {
      const forward = (payload: MediaGatewayEvents[typeof event]) => listener(payload, node.nodeId);
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

export interface BusMediaGatewayOptions {
  bus: EventBus;
  log: Logger;
  /** Used for streams without a media node id (single media node deployments). */
  defaultNodeId?: string;
  /** Per call; creating a consumer may pipe routers across workers, so allow more than the bus default. */
  timeoutMs?: number;
  /** CIRCUIT_BREAKER_RESET_MS for the breaker in front of each node; default 10 s. */
  breakerResetMs?: number;
}

/** Cluster: calls and events through the EventBus. */
export function busMediaGateway(options: BusMediaGatewayOptions): MediaGateway & { ready: Promise<void> } {
  const { bus, log } = options;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const nodes = new Map<string, MediaNodeApi>();
  const listeners = new Map<MediaGatewayEventName, Set<(payload: unknown, nodeId: string) => void>>();
  const subscriptions: Subscription[] = [];
  const breakers: Breaker[] = [];

  for (const event of MEDIA_GATEWAY_EVENTS) {
    subscriptions.push(
      bus.subscribe(mediaEventFromAnyNode(event), (payload, subject) => {
        const nodeId = nodeIdOfEventSubject(subject);
        const parsed = MEDIA_EVENT_SCHEMAS[event].safeParse(payload);
        if (!parsed.success) {
          log.warn({ subject, issue: parsed.error.issues[0]?.message }, 'ignoring a malformed media event');
          return;
        }
        for (const listener of listeners.get(event) ?? []) listener(parsed.data, nodeId);
      }),
    );
  }

  const proxy = (nodeId: string): MediaNodeApi => {
    if (!MEDIA_NODE_ID.test(nodeId))
      throw new UnavailableError(`media node id "${nodeId}" cannot be reached over the bus`);
    // One breaker per node: a node that stopped answering fails fast without cutting the others off.
    // Only the bus's own failures count (no responder, timeout): an error the node answered is an answer.
    const breaker = createBreaker({
      target: 'media-node',
      peer: nodeId,
      resetTimeoutMs: options.breakerResetMs ?? 10_000,
      log,
      isFailure: (error) => error instanceof UnavailableError,
    });
    breakers.push(breaker);
    const api: Record<string, (...args: unknown[]) => Promise<unknown>> = {};
    for (const method of MEDIA_NODE_METHODS) {
      const result = MEDIA_NODE_CALLS[method].result;
      api[method] = async (...args: unknown[]) => {
        const reply = await breaker.run(() =>
          bus.request(mediaRequestSubject(nodeId, method), { args }, { timeoutMs }),
        );
        // The node validates the arguments; the reply is checked here, against the same contract.
        const parsed = result.safeParse(reply);
        if (parsed.success) return parsed.data;
        const issue = parsed.error.issues[0];
        log.error(
          { nodeId, method, path: issue?.path.join('.'), issue: issue?.message },
          'malformed reply from a media node',
        );
        throw new VezaError('internal', `malformed reply from media node ${nodeId} to ${method}`);
      };
    }
    // Each method above was built from MEDIA_NODE_CALLS, with that method's result schema.
    return api as MediaNodeApi;
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
      for (const breaker of breakers) breaker.close();
      for (const subscription of subscriptions) subscription.unsubscribe();
      listeners.clear();
    },
  };
}
