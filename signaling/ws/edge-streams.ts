/**
 * The edge's side of its streams, assembled from its parts: who is in which stream
 * (./stream-registry.ts), whether each stream still has a broadcaster and what the bus says of it
 * (./stream-liveness.ts), the media nodes' events as notifications (./media-fanout.ts), and what
 * a connection's media needs of all of them (./media-session.ts's context).
 */
import { edgePeerPrefix } from '../../common/contracts/index.js';
import type { Logger } from '../../common/index.js';
import type { EventBus } from '../../common/ports/index.js';
import type { ControlPlaneClient } from '../../control-plane/client/index.js';
import type { IceServer } from '../protocol/index.js';
import type { AudienceReporter } from './audience.js';
import { busListenerPlacer, type ListenerPlacer, originPlacer } from './listener-placer.js';
import { MediaFanout } from './media-fanout.js';
import type { MediaGateway } from './media-gateway.js';
import type { MediaSessionContext } from './media-session.js';
import { NodeListeners } from './node-listeners.js';
import type { TopicPublisher } from './socket.js';
import { StreamLiveness } from './stream-liveness.js';
import { StreamLookup } from './stream-lookup.js';
import { StreamRegistry } from './stream-registry.js';

export interface EdgeStreamsOptions {
  app: TopicPublisher;
  controlPlane: Pick<ControlPlaneClient, 'stream'>;
  bus: EventBus;
  media: MediaGateway;
  edgeId: string;
  /** This edge's run (its presence boot id): part of every media peer id it makes. */
  bootId: string;
  graceMs: number;
  /** The ICE servers for one user's transports (TURN credentials can be per user). */
  iceServers: (userId: number) => IceServer[];
  audience: AudienceReporter;
  log: Logger;
  /** Minimum gap between listener-count notifications of one stream (default 250 ms). */
  listenerNotifyMs?: number;
  /** Minimum gap between ReportListenerCount calls for one stream (default 1 s). */
  listenerReportMs?: number;
  /**
   * Cluster mode: listeners are placed across the cluster's media nodes by the control planes'
   * registry (cascaded fan-out), and moved when their node dies. Without it (standalone, one
   * node) every listener joins its stream's node with no extra request.
   */
  cascade?: { cluster: string; zone?: string };
}

export interface EdgeStreams {
  /** What each connection's media session is given. */
  readonly media: MediaSessionContext;
  /** Subscribes to the bus and the media nodes; resolves once the bus routes to us. */
  start(): Promise<void>;
  close(): void;
}

export function edgeStreams(options: EdgeStreamsOptions): EdgeStreams {
  const { controlPlane, log } = options;
  // The registry reports its broadcasters coming and going; the liveness, made right below, decides.
  const registry: StreamRegistry = new StreamRegistry({
    app: options.app,
    onBroadcasterJoined: (streamId) => liveness.broadcasterJoined(streamId),
    onBroadcasterLeft: (stream, cause) => liveness.broadcasterLeft(stream, cause),
  });
  // What joins need, kept current by the liveness's bus events; it asks the liveness what ended or moved.
  const lookup: StreamLookup = new StreamLookup({
    controlPlane,
    fates: {
      isEnded: (streamId) => liveness.isEnded(streamId),
      movedTo: (streamId) => liveness.movedTo(streamId),
    },
  });
  const liveness = new StreamLiveness({
    bus: options.bus,
    controlPlane,
    media: options.media,
    streams: registry,
    directory: lookup,
    edgeId: options.edgeId,
    graceMs: options.graceMs,
    log,
  });
  const nodeListeners = new NodeListeners();
  const fanout = new MediaFanout({
    media: options.media,
    streams: registry,
    liveness,
    controlPlane,
    nodeListeners,
    log,
    ...(options.listenerNotifyMs === undefined ? {} : { listenerNotifyMs: options.listenerNotifyMs }),
    ...(options.listenerReportMs === undefined ? {} : { listenerReportMs: options.listenerReportMs }),
  });
  const placement: ListenerPlacer = options.cascade
    ? busListenerPlacer({
        bus: options.bus,
        log,
        cluster: options.cascade.cluster,
        ...(options.cascade.zone ? { zone: options.cascade.zone } : {}),
      })
    : originPlacer();
  return {
    media: {
      gateway: options.media,
      streams: registry,
      liveness,
      lookup,
      peerPrefix: edgePeerPrefix(options.edgeId, options.bootId),
      iceServers: options.iceServers,
      audience: options.audience,
      placement,
      nodeListeners,
    },
    async start() {
      fanout.start();
      await Promise.all([
        liveness.start(),
        options.cascade
          ? nodeListeners.watch({ bus: options.bus, cluster: options.cascade.cluster, log })
          : null,
      ]);
    },
    close() {
      // Notifications stop first, as the edge's sockets are about to close.
      registry.close();
      fanout.close();
      liveness.close();
      nodeListeners.close();
      void placement.close();
    },
  };
}
