/**
 * Where the edge joins a listener: the media node the control planes' registry chooses for it
 * (cascaded fan-out, common/contracts/listener-placement.ts), and the node it must pull the stream
 * from first when it joins the stream's tree. The edge then makes one `joinStream` call on that
 * node with `pullFrom`, so a join costs one placement request more than on a single node.
 *
 * - origin: standalone mode, one media node: every listener joins the stream's node, no request.
 * - bus: cluster mode. One request per join (one control plane answers); the listeners that left
 *   are told to every control plane in batches, one message per `flushMs` at most.
 */
import {
  listenersLeftSubject,
  type PlaceListenerRequest,
  type PlaceListenerResult,
  placeListenerResultSchema,
  placeListenerSubject,
  UnavailableError,
  VezaError,
} from '../../common/contracts/index.js';
import type { Logger } from '../../common/index.js';
import type { EventBus } from '../../common/ports/index.js';

/** Entries per `left` message (the contract's bound). */
const MAX_BATCH = 10_000;

export interface ListenerPlacer {
  /** The node for a listener of the stream whose origin is `originNodeId`; VezaErrors as the registry answers (resource_exhausted "at capacity"). */
  place(request: {
    streamId: number;
    originNodeId: string;
    previousNodeId?: string;
  }): Promise<PlaceListenerResult>;
  /** A listener placed by place() left its node. */
  left(streamId: number, nodeId: string): void;
  close(): Promise<void>;
}

/** One media node: the stream's node takes every listener, as before cascading. */
export function originPlacer(): ListenerPlacer {
  return {
    place: async ({ originNodeId }) => ({ nodeId: originNodeId, pullFrom: null }),
    left() {},
    async close() {},
  };
}

export interface BusListenerPlacerOptions {
  bus: EventBus;
  log: Logger;
  /** MEDIA_CLUSTER: the registries this edge's media nodes announce themselves to. */
  cluster: string;
  /** MEDIA_NODE_ZONE of this edge: its listeners stay near nodes of that zone when they can. */
  zone?: string;
  /** Most one batch of listeners that left waits. Default 500 ms. */
  flushMs?: number;
  /** Per placement request. Default 3 s. */
  timeoutMs?: number;
}

export function busListenerPlacer(options: BusListenerPlacerOptions): ListenerPlacer {
  const { bus, log, cluster } = options;
  const flushMs = options.flushMs ?? 500;
  const timeoutMs = options.timeoutMs ?? 3000;
  const pending = new Map<string, { streamId: string; nodeId: string; count: number }>();
  let timer: ReturnType<typeof setTimeout> | undefined;

  const flush = async () => {
    timer = undefined;
    if (pending.size === 0) return;
    const entries = [...pending.values()];
    pending.clear();
    // The contract bounds one message; a larger burst goes in several.
    for (let start = 0; start < entries.length; start += MAX_BATCH) {
      const left = entries.slice(start, start + MAX_BATCH);
      await bus.publish(listenersLeftSubject(cluster), { left }).catch((error: unknown) => {
        // The nodes' next heartbeats carry their real listener counts: placement catches up by itself.
        log.warn({ err: error, entries: left.length }, 'could not tell the registries which listeners left');
      });
    }
  };

  return {
    async place({ streamId, originNodeId, previousNodeId }) {
      const request: PlaceListenerRequest = {
        streamId: String(streamId),
        originNodeId,
        ...(options.zone ? { zone: options.zone } : {}),
        ...(previousNodeId ? { previousNodeId } : {}),
      };
      let reply: unknown;
      try {
        reply = await bus.request(placeListenerSubject(cluster), request, { timeoutMs });
      } catch (error) {
        // No registry answers (control planes of the previous version, or none reachable right
        // now): the stream's own node takes the listener, as it did before cascading.
        if (error instanceof UnavailableError) {
          log.warn(
            { streamId, originNodeId, err: error },
            'no listener placement answered: joining the origin',
          );
          return { nodeId: originNodeId, pullFrom: null };
        }
        throw error;
      }
      const parsed = placeListenerResultSchema.safeParse(reply);
      if (parsed.success) return parsed.data;
      log.error({ streamId, issue: parsed.error.issues[0]?.message }, 'malformed listener placement');
      throw new VezaError('internal', `malformed listener placement for stream ${streamId}`);
    },
    left(streamId, nodeId) {
      const key = `${streamId}.${nodeId}`;
      const entry = pending.get(key);
      if (entry) entry.count++;
      else pending.set(key, { streamId: String(streamId), nodeId, count: 1 });
      if (!timer) {
        timer = setTimeout(() => void flush(), flushMs);
        timer.unref();
      }
    },
    async close() {
      if (timer) clearTimeout(timer);
      await flush();
    },
  };
}
