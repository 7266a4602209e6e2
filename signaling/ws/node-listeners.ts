/**
 * Which of this edge's listeners are on which media node, so that when a node dies its listeners
 * move (cascaded fan-out): the edge watches the media nodes' presence (common/presence.ts, as the
 * control planes do) and tells each listener of a lost node to join again (`workerRestarted`,
 * `reconnect: true`, what the client library already follows after a worker death); the join asks
 * placement again, which no longer lists the dead node.
 *
 * A node that says goodbye drains: it keeps serving its listeners, so they stay. The listeners of
 * a stream's own node (its origin) are left to the control plane, which moves or ends the stream.
 */
import {
  type MediaNodeHeartbeat,
  mediaNodeHeartbeatSchema,
  mediaPresenceGroup,
} from '../../common/contracts/index.js';
import { type Logger, type PresenceWatch, watchPresence } from '../../common/index.js';
import type { EventBus } from '../../common/ports/index.js';

/** A listener that can be asked to join again, or to consume again. */
export interface MovableListener {
  nodeLost(nodeId: string): void;
  /** Its node re-attached the stream under another carrier: the relayed producer it consumed was replaced. */
  relayReplaced(streamId: number, producerId: string): void;
}

export class NodeListeners {
  readonly #byNode = new Map<string, Set<MovableListener>>();
  #watch: PresenceWatch<MediaNodeHeartbeat> | undefined;

  add(nodeId: string, listener: MovableListener): void {
    let set = this.#byNode.get(nodeId);
    if (!set) {
      set = new Set();
      this.#byNode.set(nodeId, set);
    }
    set.add(listener);
  }

  remove(nodeId: string, listener: MovableListener): void {
    const set = this.#byNode.get(nodeId);
    if (!set) return;
    set.delete(listener);
    if (set.size === 0) this.#byNode.delete(nodeId);
  }

  /** The node is gone: each of its listeners is asked to join again. */
  lost(nodeId: string): number {
    const set = this.#byNode.get(nodeId);
    if (!set) return 0;
    this.#byNode.delete(nodeId);
    for (const listener of set) listener.nodeLost(nodeId);
    return set.size;
  }

  /** A relay node pulls a stream from a new parent: its listeners of that stream consume the new producer. */
  relayReplaced(nodeId: string, streamId: number, producerId: string): void {
    for (const listener of this.#byNode.get(nodeId) ?? []) listener.relayReplaced(streamId, producerId);
  }

  /** Watches the cluster's media nodes (cluster mode); resolves once heartbeats reach the edge. */
  watch(options: { bus: EventBus; cluster: string; log: Logger }): Promise<void> {
    const { log } = options;
    this.#watch = watchPresence({
      bus: options.bus,
      group: mediaPresenceGroup(options.cluster),
      log,
      what: 'media node',
      schema: mediaNodeHeartbeatSchema,
      onLeave: (heartbeat, cause) => {
        if (cause === 'goodbye') return;
        const moved = this.lost(heartbeat.nodeId);
        if (moved > 0)
          log.warn(
            { nodeId: heartbeat.nodeId, cause, listeners: moved },
            'media node lost: its listeners join again',
          );
      },
    });
    return this.#watch.ready;
  }

  close(): void {
    this.#watch?.close();
    this.#byNode.clear();
  }
}
