/**
 * One connection's media: the stream it joined and in what role, and the media objects it owns
 * on the stream's media node, for the media methods of the protocol (join, createTransport,
 * connectTransport, produce, consume, pause/resume, restartIce, getStats, leave).
 *
 * Ownership is checked here, not trusted from the client: a connection may only touch
 * transports and consumers it created, only the stream's owner (with the broadcaster role)
 * may join as broadcaster and produce, and a listener token may only listen to its stream.
 */
import {
  type ConsumeResult,
  FailedPreconditionError,
  type JoinStreamResult,
  MEDIA_FAILURE,
  type MediaNodeApi,
  type TransportInfo as MediaTransportInfo,
  NotFoundError,
  PermissionDeniedError,
  ROUTER_RTP_CAPABILITIES,
  VezaError,
} from '../../common/contracts/index.js';
import type { Logger } from '../../common/index.js';
import {
  type ChatMethod,
  CLOSE_CODES,
  type ConsumerOffer,
  type DtlsParameters,
  type IceCandidate,
  type IceServer,
  type Method,
  type MethodParams,
  type MethodResults,
  type Role,
  type RtpCapabilities,
  type RtpParameters,
  type ServerFrame,
  type TransportInfo,
} from '../protocol/index.js';
import type { AudienceReporter, AudienceSession } from './audience.js';
import { noAudio, notJoined, streamEnded } from './errors.js';
import type { ListenerPlacer } from './listener-placer.js';
import type { MediaGateway } from './media-gateway.js';
import { toProtocolStats } from './media-stats.js';
import type { MovableListener, NodeListeners } from './node-listeners.js';
import type { ConnectionSocket } from './socket.js';
import type { StreamLiveness } from './stream-liveness.js';
import type { StreamLookup, StreamMeta } from './stream-lookup.js';
import type { LeaveCause, StreamMember, StreamRegistry } from './stream-registry.js';
import type { ConnectionAuth } from './upgrade.js';

export type MediaMethod = Exclude<Method, ChatMethod>;

/** What the connection sees of its media: the media requests and its end. */
export interface MediaRequests {
  handle<M extends MediaMethod>(method: M, params: MethodParams[M]): Promise<MethodResults[M]>;
  /** The socket is gone: release the connection's media. */
  closed(): Promise<void>;
}

/** What every media session of the edge shares. */
export interface MediaSessionContext {
  gateway: Pick<MediaGateway, 'node'>;
  streams: Pick<StreamRegistry, 'joined' | 'left'>;
  liveness: Pick<StreamLiveness, 'isEnded' | 'claimBroadcaster'>;
  lookup: Pick<StreamLookup, 'streamMeta'>;
  /** Every media peer id this edge makes starts with it (the contract's edgePeerPrefix). */
  peerPrefix: string;
  /** The ICE servers for one user's transports (TURN credentials can be per user). */
  iceServers: (userId: number) => IceServer[];
  /** Which media node takes a listener (cascaded fan-out; the stream's own node with one node). */
  placement: Pick<ListenerPlacer, 'place' | 'left'>;
  /** This edge's listeners per media node, moved when their node dies. */
  nodeListeners: Pick<NodeListeners, 'add' | 'remove'>;
  /** Audience analytics of every media session of the edge. */
  audience: AudienceReporter;
}

export interface MediaSessionOptions {
  /** The connection's number on this edge: part of its media peer ids. */
  connectionId: number;
  /** The connection's auth, shared with its token lifetime: a refresh updates it here too. */
  auth: ConnectionAuth;
  socket: ConnectionSocket;
  log: Logger;
  context: MediaSessionContext;
  /** The client's country (from its address, which is not kept), or null when unknown. */
  country: string | null;
}

interface Joined {
  streamId: number;
  role: Role;
  peerId: string;
  /** The media node the connection is on: the stream's origin, or where placement put a listener. */
  nodeId: string;
  /** Placement counted this listener on nodeId (given back when it leaves). */
  placed: boolean;
  /** The stream's own node when the connection joined. */
  originNodeId: string;
  media: MediaNodeApi;
  meta: StreamMeta;
  transports: Map<string, 'send' | 'recv'>;
  consumers: Set<string>;
  producerId: string | null;
  /** Set once the join succeeded. */
  audience: AudienceSession | null;
}

/** Streams a connection remembers being allowed into (it joins one at a time; a few suffice). */
const MAX_REMEMBERED_STREAMS = 16;

type Handlers = { [M in MediaMethod]: (params: MethodParams[M]) => Promise<MethodResults[M]> };

/**
 * mediasoup (server) and mediasoup-client declare the same JSON shapes with slightly different
 * TypeScript types (string unions vs strings); the values are passed through unchanged.
 */
const sameJson = <T>(value: unknown): T => value as T;
/** Every router's capabilities (the node's tests hold it to this constant). */
const ROUTER_CAPABILITIES = sameJson<RtpCapabilities>(ROUTER_RTP_CAPABILITIES);

function toTransportInfo(info: MediaTransportInfo, iceServers: IceServer[]): TransportInfo {
  return {
    id: info.transportId,
    iceParameters: info.iceParameters,
    iceCandidates: sameJson<IceCandidate[]>(info.iceCandidates),
    dtlsParameters: sameJson<DtlsParameters>(info.dtlsParameters),
    iceServers,
  };
}

function toConsumerOffer(consumer: ConsumeResult): ConsumerOffer {
  return {
    consumerId: consumer.consumerId,
    producerId: consumer.producerId,
    kind: 'audio',
    rtpParameters: sameJson<RtpParameters>(consumer.rtpParameters),
    paused: true,
  };
}

export class MediaSession implements MediaRequests, StreamMember, MovableListener {
  readonly #connectionId: number;
  readonly #auth: ConnectionAuth;
  readonly #socket: ConnectionSocket;
  readonly #log: Logger;
  readonly #context: MediaSessionContext;
  readonly #country: string | null;
  #joined: Joined | null = null;
  /** The stream this connection was in when it ended: media calls then say so instead of "join first". */
  #endedStreamId: number | null = null;
  #joins = 0;
  #replaced = false;
  /** Streams this connection was allowed into, so a re-join after a worker restart needs no token. */
  readonly #authorized = new Map<number, StreamMeta>();

  constructor(options: MediaSessionOptions) {
    this.#connectionId = options.connectionId;
    this.#auth = options.auth;
    this.#socket = options.socket;
    this.#log = options.log;
    this.#context = options.context;
    this.#country = options.country;
  }

  handle<M extends MediaMethod>(method: M, params: MethodParams[M]): Promise<MethodResults[M]> {
    const handler = this.#handlers[method] as (params: MethodParams[M]) => Promise<MethodResults[M]>;
    return handler(params);
  }

  async closed(): Promise<void> {
    // A replaced broadcaster is not "gone": no grace period for the stream.
    await this.#leave(this.#replaced ? 'replaced' : 'disconnected');
  }

  subscribe(topic: string): void {
    this.#socket.subscribe(topic);
  }

  unsubscribe(topic: string): void {
    this.#socket.unsubscribe(topic);
  }

  send(frame: ServerFrame): void {
    this.#socket.send(frame);
  }

  async streamEnded(streamId: number): Promise<void> {
    const meta = this.#authorized.get(streamId);
    if (meta) meta.status = 'ended';
    if (this.#joined?.streamId === streamId) {
      // #leave resets the marker synchronously; set it before its first await so no request sees "join first".
      const leaving = this.#leave('stream-ended');
      this.#endedStreamId = streamId;
      await leaving;
    }
  }

  /** The media node this connection listens on died: the client joins again, and placement moves it. */
  nodeLost(nodeId: string): void {
    const joined = this.#joined;
    if (!joined || joined.nodeId !== nodeId) return;
    // The stream's own node: the control plane moves the stream (stream.moved makes everyone join
    // again) or ends it (streamEnded, with its reason), and a join now would race that answer.
    if (!joined.placed || joined.nodeId === joined.originNodeId) return;
    this.#socket.send({
      notification: 'workerRestarted',
      data: { streamId: joined.streamId, reconnect: true },
    });
  }

  /**
   * The relayed producer this listener consumed on its node was replaced by one pulled from another
   * carrier (same id): the node closed its consumer, so the client is told so and consumes again on
   * the transport it has (what it does when a broadcaster comes back), without a new join.
   */
  relayReplaced(streamId: number, producerId: string): void {
    const joined = this.#joined;
    if (!joined || joined.streamId !== streamId || joined.role !== 'listener') return;
    this.#socket.send({ notification: 'producerClosed', data: { streamId, producerId } });
    this.#socket.send({ notification: 'streamStarted', data: { streamId, producerId } });
  }

  replaced(): void {
    this.#replaced = true;
    this.#socket.end(CLOSE_CODES.replaced, 'replaced by a newer broadcaster connection');
  }

  #require(method: MediaMethod): Joined {
    if (this.#joined) return this.#joined;
    if (this.#endedStreamId !== null) throw streamEnded(this.#endedStreamId);
    throw notJoined(method);
  }

  #ownTransport(joined: Joined, transportId: string, direction?: 'send' | 'recv'): void {
    const own = joined.transports.get(transportId);
    if (!own) throw new NotFoundError(`transport ${transportId} is not one of this connection's transports`);
    if (direction && own !== direction) {
      throw new FailedPreconditionError(
        `transport ${transportId} is a ${own} transport; this needs a ${direction} one`,
      );
    }
  }

  #ownProducer(joined: Joined, producerId: string): void {
    if (joined.producerId !== producerId) {
      throw new NotFoundError(`producer ${producerId} is not this connection's producer`);
    }
  }

  #ownConsumer(joined: Joined, consumerId: string): void {
    if (!joined.consumers.has(consumerId)) {
      throw new NotFoundError(`consumer ${consumerId} is not one of this connection's consumers`);
    }
  }

  async #mediaCall<T>(joined: Joined, call: () => Promise<T>): Promise<T> {
    let result: T;
    try {
      result = await call();
    } catch (error) {
      throw this.#classify(joined, error);
    }
    if (this.#joined !== joined) {
      // The connection left (or closed) while the call ran: what it created must not outlive it.
      await joined.media.closePeer(joined.peerId).catch(() => undefined);
      throw new FailedPreconditionError(`left stream ${joined.streamId} while the request ran`);
    }
    return result;
  }

  /**
   * The media node's "stream ended" and "no broadcaster audio" failures, as the protocol's reasons:
   * read from the reason the error carries, never from its message, and without asking the node again.
   */
  #classify(joined: Joined, error: unknown): unknown {
    if (!(error instanceof VezaError)) return error;
    const { reason } = error.details;
    // The edge may know of the end before the node's answer says so.
    const ended = error.code === 'failed_precondition' && this.#context.liveness.isEnded(joined.streamId);
    if (ended || reason === MEDIA_FAILURE.streamEnded) return streamEnded(joined.streamId);
    if (reason === MEDIA_FAILURE.noAudio) return noAudio(joined.streamId);
    return error;
  }

  async #leave(cause: LeaveCause): Promise<void> {
    this.#endedStreamId = null;
    const joined = this.#joined;
    if (!joined) return;
    this.#joined = null;
    joined.audience?.end(cause);
    this.#context.streams.left(this, joined.meta, joined.role, cause);
    this.#context.nodeListeners.remove(joined.nodeId, this);
    // A rejoin gives its place back in its placement request (previousNodeId), in the same step.
    if (joined.placed && cause !== 'rejoin') this.#context.placement.left(joined.streamId, joined.nodeId);
    try {
      await joined.media.closePeer(joined.peerId);
    } catch (error) {
      this.#log.warn({ err: error, peerId: joined.peerId }, 'could not close the media peer');
    }
  }

  readonly #handlers: Handlers = {
    join: async ({ streamId, role, rtpCapabilities }) => {
      const auth = this.#auth;
      const { gateway, streams, liveness, lookup } = this.#context;
      if (auth.kind === 'listener') {
        if (role !== 'listener') throw new PermissionDeniedError('a listener token can only listen');
        if (auth.streamId !== null && auth.streamId !== streamId) {
          throw new PermissionDeniedError(
            `this listener token is for stream ${auth.streamId}, not ${streamId}`,
          );
        }
      }
      const meta = await lookup.streamMeta(auth, streamId, this.#authorized.get(streamId));
      if (meta.status !== 'live') throw streamEnded(streamId);
      if (auth.kind === 'listener' && !meta.allowAnonymous) {
        throw new PermissionDeniedError(
          `stream ${streamId} does not allow anonymous listeners; sign in to listen`,
        );
      }
      if (
        role === 'broadcaster' &&
        !(auth.kind === 'user' && auth.roles.includes('broadcaster') && meta.ownerId === auth.userId)
      ) {
        throw new PermissionDeniedError(
          `only the owner of stream ${streamId}, with the broadcaster role, may broadcast it`,
        );
      }
      this.#authorized.set(streamId, meta);
      if (this.#authorized.size > MAX_REMEMBERED_STREAMS) {
        const oldest = this.#authorized.keys().next().value;
        if (oldest !== undefined && oldest !== streamId) this.#authorized.delete(oldest);
      }
      const previous = this.#joined;
      const previousNodeId = previous?.placed && previous.streamId === streamId ? previous.nodeId : undefined;
      await this.#leave('rejoin');
      if (previous?.placed && previousNodeId === undefined)
        this.#context.placement.left(previous.streamId, previous.nodeId);
      if (!this.#socket.open) throw new FailedPreconditionError('connection closed');

      // A listener goes where placement puts it (maybe a node that pulls the stream first); the
      // broadcaster, a stream without a media node id (the gateway's default node) and the first v1
      // shape (no capabilities: its separate calls cannot carry pullFrom) stay on the origin.
      const placement =
        role === 'listener' && meta.mediaNodeId && rtpCapabilities
          ? await this.#context.placement.place({
              streamId,
              originNodeId: meta.mediaNodeId,
              ...(previousNodeId ? { previousNodeId } : {}),
            })
          : null;
      const nodeId = placement?.nodeId ?? meta.mediaNodeId;
      const media = gateway.node(nodeId);
      // `<edgeId>:<bootId>:`: unique per edge run, and how the media node finds this edge's peers when it is gone.
      const peerId = `${this.#context.peerPrefix}${this.#connectionId}:${++this.#joins}`;
      const joined: Joined = {
        streamId,
        role,
        peerId,
        nodeId,
        placed: placement !== null,
        originNodeId: meta.mediaNodeId,
        media,
        meta,
        transports: new Map(),
        consumers: new Set(),
        producerId: null,
        audience: null,
      };
      // With the device's capabilities, one media-node call places the connection (transport and
      // consumer); without them (the first v1 shape) the client asks for each afterwards.
      let placed: JoinStreamResult | null = null;
      let routerCapabilities: RtpCapabilities;
      let listenerCount: number | null = null;
      // A listener placed without audio waits for streamStarted: it must be in the stream's topic
      // before the node looks for a producer, or one opening in between (its event may overtake
      // the node's answer on the bus) would never reach it. The first v1 shape subscribed at join
      // too, before its separate consume.
      const subscribedEarly = rtpCapabilities !== undefined && role === 'listener';
      if (subscribedEarly) streams.joined(this, streamId, role);
      try {
        if (rtpCapabilities) {
          placed = await media
            .joinStream({
              streamId: String(streamId),
              peerId,
              role,
              ...(role === 'listener' ? { rtpCapabilities } : {}),
              ...(placement?.pullFrom ? { pullFrom: placement.pullFrom } : {}),
            })
            .catch((error: unknown) => {
              if (error instanceof VezaError && error.details.reason === MEDIA_FAILURE.atCapacity)
                this.#log.warn({ streamId, mediaNodeId: nodeId }, 'join refused: stream at capacity');
              throw this.#classify(joined, error);
            });
          routerCapabilities = ROUTER_CAPABILITIES;
          listenerCount = placed.listenerCount;
        } else {
          const opened = await media.openStream(String(streamId));
          routerCapabilities = sameJson<RtpCapabilities>(opened.rtpCapabilities);
        }
        if (liveness.isEnded(streamId)) {
          // It ended while we opened it: do not leave a router open for a stream nobody will close.
          await media.closeStream(String(streamId)).catch(() => undefined);
          throw streamEnded(streamId);
        }
        if (role === 'broadcaster') await liveness.claimBroadcaster(this, streamId, media, peerId);
        if (!this.#socket.open) {
          await media.closePeer(peerId).catch(() => undefined);
          throw new FailedPreconditionError('connection closed');
        }
      } catch (error) {
        if (subscribedEarly) streams.left(this, meta, role, 'rejoin');
        if (placement) this.#context.placement.left(streamId, nodeId);
        throw error;
      }
      this.#joined = joined;
      this.#context.nodeListeners.add(nodeId, this);
      joined.audience = this.#context.audience.start({
        streamId,
        role,
        peerId,
        userId: auth.userId,
        anonId: auth.anonymousId,
        country: this.#country,
        media,
      });
      if (!subscribedEarly) streams.joined(this, streamId, role);
      const iceServers = this.#context.iceServers(auth.userId);
      const result: MethodResults['join'] = {
        peerId,
        streamId,
        role,
        rtpCapabilities: routerCapabilities,
        iceServers,
        listenerCount: listenerCount ?? (await media.listenerCount(String(streamId)).catch(() => 0)),
        stream: { title: meta.title, ownerId: meta.ownerId, ownerUsername: meta.ownerUsername },
      };
      if (placed) {
        const { transport, consumer } = placed;
        joined.transports.set(transport.transportId, role === 'broadcaster' ? 'send' : 'recv');
        result.transport = toTransportInfo(transport, iceServers);
        result.consumer = null;
        if (consumer) {
          joined.consumers.add(consumer.consumerId);
          result.consumer = toConsumerOffer(consumer);
        }
      }
      return result;
    },

    getRouterRtpCapabilities: async () => {
      const joined = this.#require('getRouterRtpCapabilities');
      const rtpCapabilities = await this.#mediaCall(joined, () =>
        joined.media.getRouterRtpCapabilities(String(joined.streamId)),
      );
      return { rtpCapabilities: sameJson<RtpCapabilities>(rtpCapabilities) };
    },

    createTransport: async ({ direction }) => {
      const joined = this.#require('createTransport');
      if (direction === 'send' && joined.role !== 'broadcaster') {
        throw new PermissionDeniedError(
          'only the broadcaster sends: join as broadcaster to create a send transport',
        );
      }
      const info = await this.#mediaCall(joined, () =>
        joined.media.createTransport({ streamId: String(joined.streamId), peerId: joined.peerId, direction }),
      );
      joined.transports.set(info.transportId, direction);
      return toTransportInfo(info, this.#context.iceServers(this.#auth.userId));
    },

    connectTransport: async ({ transportId, dtlsParameters }) => {
      const joined = this.#require('connectTransport');
      this.#ownTransport(joined, transportId);
      await this.#mediaCall(joined, () => joined.media.connectTransport(transportId, dtlsParameters));
      return {};
    },

    produce: async ({ transportId, kind, rtpParameters }) => {
      const joined = this.#require('produce');
      if (joined.role !== 'broadcaster') {
        throw new PermissionDeniedError("only the stream's owner with the broadcaster role may produce");
      }
      this.#ownTransport(joined, transportId, 'send');
      const { producerId } = await this.#mediaCall(joined, () =>
        joined.media.produce({ transportId, peerId: joined.peerId, kind, rtpParameters }),
      );
      joined.producerId = producerId;
      return { producerId };
    },

    consume: async ({ transportId, rtpCapabilities }) => {
      const joined = this.#require('consume');
      this.#ownTransport(joined, transportId, 'recv');
      const result = await this.#mediaCall(joined, () =>
        joined.media.consume({ transportId, peerId: joined.peerId, rtpCapabilities }),
      );
      joined.consumers.add(result.consumerId);
      return toConsumerOffer(result);
    },

    pauseProducer: async ({ producerId }) => {
      const joined = this.#require('pauseProducer');
      this.#ownProducer(joined, producerId);
      await this.#mediaCall(joined, () => joined.media.pauseProducer(producerId));
      return {};
    },

    resumeProducer: async ({ producerId }) => {
      const joined = this.#require('resumeProducer');
      this.#ownProducer(joined, producerId);
      await this.#mediaCall(joined, () => joined.media.resumeProducer(producerId));
      return {};
    },

    resumeConsumer: async ({ consumerId }) => {
      const joined = this.#require('resumeConsumer');
      this.#ownConsumer(joined, consumerId);
      await this.#mediaCall(joined, () => joined.media.resumeConsumer(consumerId));
      return {};
    },

    pauseConsumer: async ({ consumerId }) => {
      const joined = this.#require('pauseConsumer');
      this.#ownConsumer(joined, consumerId);
      await this.#mediaCall(joined, () => joined.media.pauseConsumer(consumerId));
      return {};
    },

    restartIce: async ({ transportId }) => {
      const joined = this.#require('restartIce');
      this.#ownTransport(joined, transportId);
      return this.#mediaCall(joined, () => joined.media.restartIce(transportId));
    },

    getStats: async () => {
      const joined = this.#require('getStats');
      const stats = await this.#mediaCall(joined, () => joined.media.getStats(joined.peerId));
      return toProtocolStats(stats);
    },

    leave: async () => {
      await this.#leave('left');
      return {};
    },
  };
}
