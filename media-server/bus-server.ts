/**
 * The media side of the bus protocol (bus-protocol.ts), used in cluster mode: answers
 * `media.<nodeId>.*`, publishes the node's events, and announces the node to the control planes
 * (a heartbeat with its load, a goodbye when it drains, a heartbeat on every probe).
 */
import { InvalidArgumentError, UnimplementedError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { EventBus, Subscription } from '../common/ports/event-bus.js';
import type { MediaNode } from './api.js';
import {
  DEFAULT_MEDIA_CLUSTER,
  MEDIA_GATEWAY_EVENTS,
  MEDIA_HEARTBEAT_MS,
  MEDIA_NODE_ID,
  MEDIA_NODE_METHODS,
  type MediaNodeGoodbye,
  type MediaNodeHeartbeat,
  type MediaNodeMethod,
  mediaEventSubject,
  mediaPresenceSubject,
  mediaRequestSchema,
  mediaRequestsOf,
} from './bus-protocol.js';

export interface ServeMediaNodeOptions {
  /** The presence group the node announces itself in (MEDIA_CLUSTER). */
  cluster?: string;
  /** Default MEDIA_HEARTBEAT_MS. */
  heartbeatMs?: number;
}

export interface MediaNodeService {
  /** Resolves once requests and event subscribers can reach the node and its first heartbeat is out. */
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
  const heartbeatMs = options.heartbeatMs ?? MEDIA_HEARTBEAT_MS;
  const allowed = new Set<string>(MEDIA_NODE_METHODS);

  const responder = bus.respond(mediaRequestsOf(nodeId), async (payload, subject) => {
    const method = subject.slice(subject.lastIndexOf('.') + 1);
    if (!allowed.has(method)) throw new UnimplementedError(`media node ${nodeId} has no method ${method}`);
    const parsed = mediaRequestSchema.safeParse(payload);
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

  // Heartbeats start once the node answers: a control plane may place a stream here right away.
  let answering = false;
  let draining = false;
  let beating = false;
  let heartbeatFailing = false;
  const heartbeat = async (): Promise<void> => {
    if (!answering || draining || beating) return;
    beating = true;
    try {
      const workers = await node.getWorkers();
      const sum = (pick: (worker: (typeof workers)[number]) => number) =>
        workers.reduce((total, worker) => total + pick(worker), 0);
      const message: MediaNodeHeartbeat = {
        nodeId,
        intervalMs: heartbeatMs,
        workers: workers.length,
        routers: sum((worker) => worker.routers),
        transports: sum((worker) => worker.transports),
        producers: sum((worker) => worker.producers),
        consumers: sum((worker) => worker.consumers),
        load: sum((worker) => worker.load),
      };
      // A goodbye sent while the workers were counted must stay the last word.
      if (draining) return;
      await bus.publish(mediaPresenceSubject(cluster, 'heartbeat'), message);
      if (heartbeatFailing) log.info({ nodeId }, 'media node heartbeats are getting out again');
      heartbeatFailing = false;
    } catch (error) {
      // Logged once per outage: the bus reconnects on its own, and heartbeats resume with it.
      if (!heartbeatFailing) log.warn({ err: error, nodeId }, 'could not send a media node heartbeat');
      heartbeatFailing = true;
    } finally {
      beating = false;
    }
  };

  const timer = setInterval(() => void heartbeat(), heartbeatMs);
  timer.unref();
  // A control plane that just started asks instead of waiting for the next beat.
  const probes: Subscription = bus.subscribe(mediaPresenceSubject(cluster, 'probe'), () => void heartbeat());

  const ready = Promise.all([responder.ready, probes.ready]).then(async () => {
    answering = true;
    await heartbeat();
    log.info({ nodeId, cluster, heartbeatMs }, 'media node announced on the bus');
  });

  let drained: Promise<void> | undefined;
  const drain = () => {
    drained ??= (async () => {
      draining = true;
      clearInterval(timer);
      probes.unsubscribe();
      const goodbye: MediaNodeGoodbye = { nodeId };
      try {
        await bus.publish(mediaPresenceSubject(cluster, 'goodbye'), goodbye);
        log.info({ nodeId, cluster }, 'media node said goodbye: no new streams');
      } catch (error) {
        // The registries forget it after its missed heartbeats instead.
        log.warn({ err: error, nodeId }, 'could not send the media node goodbye');
      }
    })();
    return drained;
  };

  let closed: Promise<void> | undefined;
  return {
    ready,
    drain,
    close() {
      closed ??= (async () => {
        await drain();
        responder.unsubscribe();
        for (const off of offs) off();
      })();
      return closed;
    },
  };
}
