/**
 * The media nodes a control plane may place new streams on (cluster mode): every node announces
 * itself on the bus (media-server/bus-protocol.ts) with a heartbeat carrying its load, and says
 * goodbye when it drains. A node is live from its heartbeat until its goodbye, or until it misses
 * MEDIA_MISSED_HEARTBEATS of its own intervals (a crash, a partition).
 *
 * Placement takes the live node with the lowest load per live worker. Heartbeats come every few
 * seconds, so the streams placed on a node since its last one count too: a burst of StartStreams
 * spreads instead of piling onto the node that looked idle. Equal nodes are picked at random, so
 * several control planes do not all choose the same one. With no node listed, placement asks the
 * nodes to announce themselves and waits a moment before giving up, so a control plane that just
 * (re)started, or a node that just came up, does not fail a StartStream.
 */
import { UnavailableError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { EventBus } from '../../common/ports/event-bus.js';
import {
  DEFAULT_MEDIA_CLUSTER,
  MEDIA_MISSED_HEARTBEATS,
  type MediaNodeHeartbeat,
  mediaNodeGoodbyeSchema,
  mediaNodeHeartbeatSchema,
  mediaPresenceOf,
  mediaPresenceSubject,
  presenceKindOf,
} from '../../media-server/index.js';

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
  /** Chooses the node for a new stream and counts the stream on it; UnavailableError when no node is live. */
  pick(): Promise<string>;
  close(): void;
}

export interface MediaNodeRegistryOptions {
  bus: EventBus;
  log: Logger;
  /** MEDIA_CLUSTER: only nodes announcing themselves in this cluster. */
  cluster?: string;
  /** How long pick() waits for an announcement when no node is listed. Default 1 s. */
  settleMs?: number;
}

interface Entry {
  heartbeat: MediaNodeHeartbeat;
  seenAt: number;
  placed: number;
}

const scoreOf = (entry: Entry) => (entry.heartbeat.load + entry.placed) / entry.heartbeat.workers;

export function createMediaNodeRegistry(options: MediaNodeRegistryOptions): MediaNodeRegistry {
  const { bus } = options;
  const cluster = options.cluster ?? DEFAULT_MEDIA_CLUSTER;
  const log = options.log.child({ component: 'media-node-registry', cluster });
  const settleMs = options.settleMs ?? 1000;
  const nodes = new Map<string, Entry>();
  /** pick()s waiting for a first heartbeat. */
  const waiters = new Set<() => void>();

  const probe = async () => {
    try {
      await bus.publish(mediaPresenceSubject(cluster, 'probe'), {});
    } catch (error) {
      // The nodes' next heartbeats find this registry anyway.
      log.warn({ err: error }, 'could not ask the media nodes to announce themselves');
    }
  };

  // One subscription for heartbeats and goodbyes keeps each node's messages in the order it sent them.
  const subscription = bus.subscribe(mediaPresenceOf(cluster), (payload, subject) => {
    const kind = presenceKindOf(subject);
    if (kind === 'heartbeat') {
      const parsed = mediaNodeHeartbeatSchema.safeParse(payload);
      if (!parsed.success) {
        log.warn(
          { subject, issue: parsed.error.issues[0]?.message },
          'ignoring a malformed media node heartbeat',
        );
        return;
      }
      const heartbeat = parsed.data;
      if (!nodes.has(heartbeat.nodeId))
        log.info({ nodeId: heartbeat.nodeId, workers: heartbeat.workers }, 'media node joined');
      nodes.set(heartbeat.nodeId, { heartbeat, seenAt: performance.now(), placed: 0 });
      for (const wake of [...waiters]) wake();
    } else if (kind === 'goodbye') {
      const parsed = mediaNodeGoodbyeSchema.safeParse(payload);
      if (!parsed.success) return;
      if (nodes.delete(parsed.data.nodeId))
        log.info({ nodeId: parsed.data.nodeId }, 'media node left (goodbye)');
    }
  });

  /** Forgets the nodes whose heartbeats stopped; checked on use, so no timer is needed. */
  const prune = () => {
    const now = performance.now();
    for (const [nodeId, entry] of nodes) {
      const silentMs = now - entry.seenAt;
      if (silentMs > MEDIA_MISSED_HEARTBEATS * entry.heartbeat.intervalMs) {
        nodes.delete(nodeId);
        log.warn(
          { nodeId, silentMs: Math.round(silentMs) },
          'media node missed its heartbeats; forgetting it',
        );
      }
    }
  };

  const live = (): MediaNodeStatus[] => {
    prune();
    return [...nodes.values()]
      .filter((entry) => entry.heartbeat.workers > 0)
      .map((entry) => ({ ...entry.heartbeat, placed: entry.placed, score: scoreOf(entry) }))
      .sort((a, b) => a.score - b.score);
  };

  return {
    ready: subscription.ready.then(probe),
    live,
    async pick() {
      let candidates = live();
      if (candidates.length === 0) {
        await new Promise<void>((resolve) => {
          const wake = () => {
            clearTimeout(timer);
            waiters.delete(wake);
            resolve();
          };
          const timer = setTimeout(wake, settleMs);
          waiters.add(wake);
          void probe();
        });
        candidates = live();
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
      const entry = nodes.get(chosen.nodeId);
      if (entry) entry.placed++;
      return chosen.nodeId;
    },
    close() {
      subscription.unsubscribe();
      nodes.clear();
      for (const wake of [...waiters]) wake();
    },
  };
}
