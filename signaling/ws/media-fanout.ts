/**
 * The media nodes' events, as notifications to the streams' connections on this edge (one
 * publish per stream topic, which uWS fans out): `streamStarted`, `producerClosed`,
 * `producerPaused` / `producerResumed`, `listenerCount` (throttled, and reported to the control
 * plane with ReportListenerCount, throttled apart), `audioLevel` (to the broadcaster only) and
 * `workerRestarted` (a worker replaced, or the stream moved to another media node); a relay node
 * that re-attached under another carrier (`relayReplaced`) is told to its own listeners only.
 */
import type { Logger } from '../../common/index.js';
import type { ControlPlaneClient } from '../../control-plane/client/index.js';
import type { MediaGateway } from './media-gateway.js';
import type { NodeListeners } from './node-listeners.js';
import type { StreamLiveness } from './stream-liveness.js';
import type { StreamRegistry } from './stream-registry.js';
import { type KeyedThrottle, keyedThrottle } from './throttle.js';

export interface MediaFanoutOptions {
  media: Pick<MediaGateway, 'on'>;
  streams: Pick<StreamRegistry, 'notify'>;
  liveness: Pick<StreamLiveness, 'isEnded' | 'producerClosed' | 'watch'>;
  controlPlane: Pick<ControlPlaneClient, 'stream'>;
  /** This edge's listeners per media node (cascaded fan-out). */
  nodeListeners: Pick<NodeListeners, 'relayReplaced'>;
  log: Logger;
  /** Minimum gap between listener-count notifications of one stream (default 250 ms). */
  listenerNotifyMs?: number;
  /** Minimum gap between ReportListenerCount calls for one stream (default 1 s). */
  listenerReportMs?: number;
}

/** The media contract names streams by string; the protocol's are positive integers. */
function streamIdOf(raw: string): number | null {
  const value = Number(raw);
  return Number.isSafeInteger(value) && value > 0 ? value : null;
}

export class MediaFanout {
  readonly #options: MediaFanoutOptions;
  readonly #notifyCount: KeyedThrottle<number, number>;
  readonly #reportCount: KeyedThrottle<number, number>;
  readonly #offs: Array<() => void> = [];

  constructor(options: MediaFanoutOptions) {
    this.#options = options;
    const { streams, liveness, controlPlane, log } = options;
    this.#notifyCount = keyedThrottle<number, number>(options.listenerNotifyMs ?? 250, (streamId, count) =>
      streams.notify(streamId, 'listenerCount', { streamId, count }),
    );
    this.#reportCount = keyedThrottle<number, number>(options.listenerReportMs ?? 1000, (streamId, count) => {
      if (liveness.isEnded(streamId)) return;
      controlPlane.stream.reportListenerCount({ streamId, listenerCount: count }).catch((error: unknown) => {
        log.warn({ err: error, streamId }, 'could not report the listener count');
      });
    });
  }

  /** Listens to the media nodes and to the streams' fates. */
  start(): void {
    const { media, streams, liveness } = this.#options;
    this.#offs.push(
      media.on('producerOpened', (event) => {
        const streamId = streamIdOf(event.streamId);
        if (streamId) streams.notify(streamId, 'streamStarted', { streamId, producerId: event.producerId });
      }),
      media.on('producerClosed', (event, nodeId) => {
        const streamId = streamIdOf(event.streamId);
        if (!streamId) return;
        streams.notify(streamId, 'producerClosed', { streamId, producerId: event.producerId });
        liveness.producerClosed({ streamId, mediaNodeId: nodeId }, event.reason);
      }),
      media.on('producerPaused', (event) => {
        const streamId = streamIdOf(event.streamId);
        if (!streamId) return;
        const data = { streamId, producerId: event.producerId };
        streams.notify(streamId, event.paused ? 'producerPaused' : 'producerResumed', data);
      }),
      media.on('listenerCount', (event) => {
        const streamId = streamIdOf(event.streamId);
        if (!streamId || liveness.isEnded(streamId)) return;
        this.#notifyCount.push(streamId, event.count);
        this.#reportCount.push(streamId, event.count);
      }),
      media.on('audioLevel', (event) => {
        const streamId = streamIdOf(event.streamId);
        if (!streamId) return;
        streams.notify(
          streamId,
          'audioLevel',
          { streamId, volume: event.volumeDbov, speaking: event.speaking },
          { broadcasterOnly: true },
        );
      }),
      // Only the listeners on that relay node lost their consumer; the rest of the stream hears on.
      media.on('relayReplaced', (event, nodeId) => {
        const streamId = streamIdOf(event.streamId);
        if (streamId) this.#options.nodeListeners.relayReplaced(nodeId, streamId, event.producerId);
      }),
      media.on('workerReplaced', (event) => {
        for (const raw of event.affectedStreamIds) {
          const streamId = streamIdOf(raw);
          if (streamId) streams.notify(streamId, 'workerRestarted', { streamId, reconnect: true });
        }
      }),
      liveness.watch({
        // A count still pending would follow the stream's end.
        ended: (streamId) => {
          this.#notifyCount.forget(streamId);
          this.#reportCount.forget(streamId);
        },
        // Its clients join again, which opens the stream on its new media node.
        moved: (streamId) => streams.notify(streamId, 'workerRestarted', { streamId, reconnect: true }),
      }),
    );
  }

  close(): void {
    for (const off of this.#offs.splice(0)) off();
    this.#notifyCount.close();
    this.#reportCount.close();
  }
}
