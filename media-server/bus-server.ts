/**
 * The media side of the bus protocol (common/contracts/media-node.ts), used in cluster mode: answers
 * `media.<nodeId>.*`, publishes the node's events, announces the node to the control planes
 * (a heartbeat with its load, a goodbye when it drains, a heartbeat on every probe), and watches
 * the edges' presence: the peers of an edge that is gone (crashed, cut off, restarted) are closed.
 */

import {
  DEFAULT_MEDIA_CLUSTER,
  edgeHeartbeatSchema,
  edgePeerPrefix,
  edgePresenceGroup,
  InvalidArgumentError,
  MEDIA_GATEWAY_EVENTS,
  MEDIA_NODE_ID,
  MEDIA_NODE_METHODS,
  type MediaNodeLoad,
  type MediaNodeMethod,
  mediaEventSubject,
  mediaPresenceGroup,
  mediaRequestSchema,
  mediaRequestsOf,
  methodOfRequestSubject,
  PRESENCE_HEARTBEAT_MS,
  UnimplementedError,
} from '../common/contracts/index.js';
import { announcePresence, type Logger, watchPresence } from '../common/index.js';
import type { EventBus } from '../common/ports/index.js';
import type { MediaNode } from './api.js';

export interface ServeMediaNodeOptions {
  /** The presence group the node announces itself in (MEDIA_CLUSTER). */
  cluster?: string;
  /** Default PRESENCE_HEARTBEAT_MS. */
  heartbeatMs?: number;
}

export interface MediaNodeService {
  /** Resolves once requests and event subscribers can reach the node, its first heartbeat is out and it watches the edges. */
  ready: Promise<void>;
  /**
   * Says goodbye: control planes stop placing new streams here at once, while the node keeps
   * answering for the streams it hosts. Idempotent.
   */
  drain(): Promise<void>;
  /** Drains (when not done yet), then stops answering and forwarding. Idempotent. */
  close(): Promise<void>;
}

export function serveMediaNodeOverBus(
  bus: EventBus,
  node: MediaNode,
  nodeId: string,
  log: Logger,
  options: ServeMediaNodeOptions = {},
): MediaNodeService {
  if (!MEDIA_NODE_ID.test(nodeId)) throw new Error(`media node id "${nodeId}" is not one bus subject token`);
  const cluster = options.cluster ?? DEFAULT_MEDIA_CLUSTER;
  if (!MEDIA_NODE_ID.test(cluster))
    throw new Error(`media cluster "${cluster}" is not one bus subject token`);
  const allowed = new Set<string>(MEDIA_NODE_METHODS);

  const responder = bus.respond(mediaRequestsOf(nodeId), async (payload, subject) => {
    const method = methodOfRequestSubject(subject);
    if (!allowed.has(method)) throw new UnimplementedError(`media node ${nodeId} has no method ${method}`);
    const parsed = mediaRequestSchema.safeParse(payload);
    if (!parsed.success) throw new InvalidArgumentError(`malformed media request on ${subject}`, 'args');
    // Each method parses its own arguments with the contract's schemas, for bus and in-process callers alike.
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

  // Heartbeats start once the node answers: a control plane may place a stream here right away.
  const presence = announcePresence<MediaNodeLoad>({
    bus,
    group: mediaPresenceGroup(cluster),
    nodeId,
    intervalMs: options.heartbeatMs ?? PRESENCE_HEARTBEAT_MS,
    log,
    what: 'media node',
    after: responder.ready,
    state: async () => {
      const workers = await node.getWorkers();
      const sum = (pick: (worker: (typeof workers)[number]) => number) =>
        workers.reduce((total, worker) => total + pick(worker), 0);
      return {
        workers: workers.length,
        routers: sum((worker) => worker.routers),
        transports: sum((worker) => worker.transports),
        producers: sum((worker) => worker.producers),
        consumers: sum((worker) => worker.consumers),
        load: sum((worker) => worker.load),
        ...node.placementState(),
      };
    },
  });

  // The edges: the peers of one that is gone go too (mediasoup would keep them for ever).
  const edges = watchPresence({
    bus,
    group: edgePresenceGroup(cluster),
    log,
    what: 'edge',
    schema: edgeHeartbeatSchema,
    onLeave(edge, cause) {
      node.closePeersOf(edgePeerPrefix(edge.nodeId, edge.bootId)).then(
        (closed) => {
          if (closed > 0)
            log.info(
              { edgeId: edge.nodeId, bootId: edge.bootId, cause, closed },
              "closed a lost edge's peers",
            );
        },
        (error: unknown) =>
          log.error({ err: error, edgeId: edge.nodeId }, "could not close a lost edge's peers"),
      );
    },
  });

  const ready = Promise.all([presence.ready, edges.ready]).then(() => undefined);

  let drained: Promise<void> | undefined;
  const drain = () => {
    drained ??= presence.goodbye().then(() => {
      log.info({ nodeId, cluster }, 'media node draining: no new streams');
    });
    return drained;
  };

  let closed: Promise<void> | undefined;
  return {
    ready,
    drain,
    close() {
      closed ??= (async () => {
        await drain();
        edges.close();
        responder.unsubscribe();
        for (const off of offs) off();
      })();
      return closed;
    },
  };
}
