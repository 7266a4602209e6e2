/**
 * The media nodes a control plane may place new streams on (cluster mode): every node announces
 * itself on the bus (media-server/bus-protocol.ts) with a heartbeat carrying its load, and says
 * goodbye when it drains. A node is live from its heartbeat until its goodbye, or until it misses
 * MEDIA_MISSED_HEARTBEATS of its own intervals (a crash, a partition) or restarts; the presence
 * watch (common/presence.ts) notices that on a timer, and `onLost` lets the stream service move the
 * lost node's streams.
 *
 * Placement takes the live node with the lowest load per live worker. Heartbeats come every few
 * seconds, so the streams placed on a node since its last one count too: a burst of StartStreams
 * spreads instead of piling onto the node that looked idle. Equal nodes are picked at random, so
 * several control planes do not all choose the same one. With no node listed, placement asks the
 * nodes to announce themselves and waits a moment before giving up, so a control plane that just
 * (re)started, or a node that just came up, does not fail a StartStream.
 *
 * Listeners are placed here too (listener-placement.ts), asked by the edges over the bus
 * (common/contracts/listener-placement.ts): one control plane answers each placement, and every
 * control plane hears the edges' batches of listeners that left.
 */
import {
  DEFAULT_MEDIA_CLUSTER,
  InvalidArgumentError,
  listenersLeftSchema,
  listenersLeftSubject,
  type MediaNodeHeartbeat,
  mediaNodeHeartbeatSchema,
  mediaPresenceGroup,
  mediaRequestSubject,
  type PlaceListenerResult,
  placeListenerRequestSchema,
  placeListenerSubject,
  pullStreamResultSchema,
  UnavailableError,
} from '../../common/contracts/index.js';
import { type Logger, type PresenceLeaveCause, watchPresence } from '../../common/index.js';
import type { EventBus } from '../../common/ports/index.js';
import {
  ListenerPlacement,
  type Placement,
  type PlaceOptions,
  type Reattachment,
} from './listener-placement.js';

export interface MediaNodeStatus extends MediaNodeHeartbeat {
  /** Streams placed on it since its last heartbeat (not in its load yet). */
  placed: number;
  /** What placement compares: (load + placed) per live worker. */
  score: number;
}

export interface MediaNodeRegistry {
  /** Resolves once heartbeats reach the registry and the nodes already running were asked to announce themselves. */
  readonly ready: Promise<void>;
  /** The live nodes, least loaded first. */
  live(): MediaNodeStatus[];
  /**
   * Chooses the node for a new stream and counts the stream on it; UnavailableError when no node is
   * live. With none listed it waits up to settleMs for one, unless `wait` is false. `exclude`: a
   * node not to choose.
   */
  pick(options?: { wait?: boolean; exclude?: string }): Promise<string>;
  /**
   * Chooses the node for a listener of a stream (cascaded fan-out, see listener-placement.ts):
   * a carrier with room, else a node added to the stream's tree (`pullFrom` says where it pulls
   * from); resource_exhausted "at capacity" when no node can take it.
   */
  placeListener(streamId: string, options: PlaceOptions): Placement;
  /** A listener placed by placeListener left. */
  listenerLeft(streamId: string, nodeId: string): void;
  close(): void;
}

export interface MediaNodeRegistryOptions {
  bus: EventBus;
  log: Logger;
  /** MEDIA_CLUSTER: only nodes announcing themselves in this cluster. */
  cluster?: string;
  /** How long pick() waits for an announcement when no node is listed. Default 1 s. */
  settleMs?: number;
  /**
   * A node is gone without a goodbye: it missed its heartbeats (a crash, a partition) or came back
   * as a new process (a restart), so the streams it hosted have no router there any more. A node
   * that said goodbye is not lost: it keeps serving its streams while it drains.
   */
  onLost?(nodeId: string, cause: Exclude<PresenceLeaveCause, 'goodbye'>): void;
  /** MEDIA_RELAY_FANOUT: most nodes one node pipes a stream to. Default 4. */
  relayFanout?: number;
}

export function createMediaNodeRegistry(options: MediaNodeRegistryOptions): MediaNodeRegistry {
  const { bus } = options;
  const cluster = options.cluster ?? DEFAULT_MEDIA_CLUSTER;
  const log = options.log.child({ component: 'media-node-registry', cluster });
  const settleMs = options.settleMs ?? 1000;
  /** Streams placed on each node since its last heartbeat. */
  const placed = new Map<string, number>();
  /** pick()s waiting for a first heartbeat. */
  const waiters = new Set<() => void>();
  const listeners = new ListenerPlacement({ fanout: options.relayFanout ?? 4 });

  const watch = watchPresence({
    bus,
    group: mediaPresenceGroup(cluster),
    log,
    what: 'media node',
    schema: mediaNodeHeartbeatSchema,
    onHeartbeat(heartbeat) {
      placed.set(heartbeat.nodeId, 0);
      listeners.observe(heartbeat);
      for (const wake of [...waiters]) wake();
    },
    onLeave(heartbeat, cause) {
      // A restarted node is listed again already (its new boot), with its own count.
      if (cause !== 'restarted') placed.delete(heartbeat.nodeId);
      // A draining node (goodbye) takes no new listener, and still feeds its children; a lost one
      // carries nothing any more: its children pull from another carrier now.
      if (cause !== 'restarted') {
        const reattached = listeners.forget(heartbeat.nodeId, { reattach: cause === 'missed' });
        for (const move of reattached) reattach(move);
      }
      if (cause !== 'goodbye') options.onLost?.(heartbeat.nodeId, cause);
    },
  });

  /**
   * Tells a carrier to pull from its new parent. Every control plane sees the same death and asks,
   * each with the parent its own view of the tree chose; the ask names the dead parent
   * (`replacing`), so the node pulls once, for the first ask, and answers the others with where it
   * pulls from now, which their trees then take.
   */
  const reattach = ({ streamId, nodeId, pullFrom, replacing }: Reattachment) => {
    const request = { args: [{ streamId, sourceNodeId: pullFrom, replacing }] };
    bus.request(mediaRequestSubject(nodeId, 'pullStream'), request, { timeoutMs: 10_000 }).then(
      (reply) => {
        const upstream = pullStreamResultSchema.safeParse(reply).data?.upstream;
        if (upstream !== undefined && upstream !== pullFrom) {
          listeners.pullsFrom(streamId, nodeId, upstream);
          log.info({ streamId, nodeId, upstream }, 'relay already re-attached by another control plane');
          return;
        }
        log.info({ streamId, nodeId, pullFrom }, 'relay re-attached under another carrier');
      },
      (error: unknown) => log.warn({ err: error, streamId, nodeId, pullFrom }, 'a relay could not re-attach'),
    );
  };

  const live = (): MediaNodeStatus[] =>
    watch
      .members()
      // A node silent past its expiry is not chosen, even while the registry cannot tell yet whether
      // the node or its own bus connection is at fault.
      .filter((member) => member.heartbeat.workers > 0 && watch.fresh(member))
      .map(({ heartbeat }) => {
        const count = placed.get(heartbeat.nodeId) ?? 0;
        return { ...heartbeat, placed: count, score: (heartbeat.load + count) / heartbeat.workers };
      })
      .sort((a, b) => a.score - b.score);

  const placeListener = (streamId: string, placeOptions: PlaceOptions): Placement => {
    try {
      return listeners.place(streamId, placeOptions);
    } catch (error) {
      log.warn({ streamId, originNodeId: placeOptions.originNodeId }, 'stream at capacity: listener refused');
      throw error;
    }
  };
  // The edges' side of placement: one request per listener join, answered by one control plane.
  const serving = bus.respond(
    placeListenerSubject(cluster),
    async (payload): Promise<PlaceListenerResult> => {
      const parsed = placeListenerRequestSchema.safeParse(payload);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new InvalidArgumentError(
          `malformed listener placement request: ${issue?.path.join('.') || 'payload'}: ${issue?.message}`,
          issue?.path.join('.'),
        );
      }
      const { streamId, originNodeId, zone, previousNodeId } = parsed.data;
      return placeListener(streamId, {
        originNodeId,
        ...(zone ? { zone } : {}),
        ...(previousNodeId ? { previousNodeId } : {}),
      });
    },
  );
  const leaving = bus.subscribe(listenersLeftSubject(cluster), (payload) => {
    const parsed = listenersLeftSchema.safeParse(payload);
    if (!parsed.success) {
      log.warn(
        { issue: parsed.error.issues[0]?.message },
        'ignoring a malformed batch of listeners that left',
      );
      return;
    }
    for (const { streamId, nodeId, count } of parsed.data.left) {
      for (let i = 0; i < count; i++) listeners.leave(streamId, nodeId);
    }
  });

  return {
    ready: Promise.all([watch.ready, serving.ready, leaving.ready]).then(() => undefined),
    live,
    async pick({ wait = true, exclude }: { wait?: boolean; exclude?: string } = {}) {
      const candidatesNow = () => live().filter((node) => node.nodeId !== exclude);
      let candidates = candidatesNow();
      if (candidates.length === 0 && wait) {
        await new Promise<void>((resolve) => {
          const wake = () => {
            clearTimeout(timer);
            waiters.delete(wake);
            resolve();
          };
          const timer = setTimeout(wake, settleMs);
          waiters.add(wake);
          void watch.probe();
        });
        candidates = candidatesNow();
      }
      const best = candidates[0];
      if (!best) {
        log.warn(
          'no live media node to place a stream on: is a VEZA_ROLES=media process running in this cluster?',
        );
        throw new UnavailableError('no media node is available to host the stream; try again shortly');
      }
      const tied = candidates.filter((node) => node.score === best.score);
      const chosen = tied[Math.floor(Math.random() * tied.length)] ?? best;
      placed.set(chosen.nodeId, (placed.get(chosen.nodeId) ?? 0) + 1);
      return chosen.nodeId;
    },
    placeListener,
    listenerLeft(streamId, nodeId) {
      listeners.leave(streamId, nodeId);
    },
    close() {
      serving.unsubscribe();
      leaving.unsubscribe();
      watch.close();
      placed.clear();
      for (const wake of [...waiters]) wake();
    },
  };
}
