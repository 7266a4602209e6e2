/**
 * One WebSocket connection's signaling state: who it is (from the token), which stream
 * it joined and in what role, and the media objects it owns. Requests are handled one at
 * a time, in arrival order, so a `join` never interleaves with a `consume` of the same
 * connection; the queue is bounded and each connection has a request rate budget.
 *
 * Ownership is checked here, not trusted from the client: a connection may only touch
 * transports and consumers it created, only the stream's owner (with the broadcaster role)
 * may join as broadcaster and produce, and a listener token may only listen to its stream.
 */
import { performance } from 'node:perf_hooks';
import {
  FailedPreconditionError,
  INTERNAL_MESSAGE,
  MEDIA_FAILURE,
  type MediaNodeApi,
  NotFoundError,
  PermissionDeniedError,
  RateLimitedError,
  toVezaError,
  UnimplementedError,
  VezaError,
} from '../../common/contracts/index.js';
import type { Logger } from '../../common/index.js';
import {
  type ChatMethod,
  CLOSE_CODES,
  type DtlsParameters,
  type ErrorBody,
  type IceCandidate,
  isChatMethod,
  type Method,
  type MethodParams,
  type MethodResults,
  type PeerStats,
  type RequestFrame,
  type RequestId,
  type Role,
  type RtpCapabilities,
  type RtpParameters,
  type ServerFrame,
} from '../protocol/index.js';
import type { ChatRequests } from './chat/index.js';
import { noAudio, notJoined, SignalingConditionError, streamEnded } from './errors.js';
import type { SignalingHub, StreamMeta } from './hub.js';
import { wsRequestDuration, wsRequests } from './metrics.js';
import type { TokenLifetime } from './token-lifetime.js';
import type { ConnectionAuth } from './upgrade.js';

/** What a session needs of its socket (a uWS WebSocket while it is open). */
export interface SessionSocket {
  send(text: string): number;
  end(code: number, reason: string): void;
  subscribe(topic: string): boolean;
  unsubscribe(topic: string): boolean;
}

export interface SessionLimits {
  maxQueuedRequests: number;
  requestsPerSecond: number;
  requestBurst: number;
}

interface Joined {
  streamId: number;
  role: Role;
  peerId: string;
  media: MediaNodeApi;
  meta: StreamMeta;
  transports: Map<string, 'send' | 'recv'>;
  consumers: Set<string>;
  producerId: string | null;
}

/** Streams a connection remembers being allowed into (it joins one at a time; a few suffice). */
const MAX_REMEMBERED_STREAMS = 16;

export type LeaveCause = 'left' | 'disconnected' | 'replaced' | 'stream-ended' | 'rejoin';

/** Media methods are handled here; chat methods by the connection's ChatRequests (./chat). */
type Handlers = {
  [M in Exclude<Method, ChatMethod>]: (params: MethodParams[M]) => Promise<MethodResults[M]>;
};

export class PeerSession {
  readonly id: number;
  readonly auth: ConnectionAuth;
  readonly log: Logger;
  #socket: SessionSocket | null;
  readonly #hub: SignalingHub;
  readonly #limits: SessionLimits;
  readonly #chat: ChatRequests | null;
  readonly #lifetime: TokenLifetime;
  #joined: Joined | null = null;
  /** The stream this connection was in when it ended: media calls then say so instead of "join first". */
  #endedStreamId: number | null = null;
  #joins = 0;
  #replaced = false;
  #queue: Promise<void> = Promise.resolve();
  #queued = 0;
  #tokens: number;
  #refilledAt = performance.now();
  /** Streams this connection was allowed into, so a re-join after a worker restart needs no token. */
  readonly #authorized = new Map<number, StreamMeta>();

  constructor(options: {
    id: number;
    auth: ConnectionAuth;
    socket: SessionSocket;
    hub: SignalingHub;
    limits: SessionLimits;
    log: Logger;
    chat?: ChatRequests;
    /** Enforces the token's expiry and revocation, and answers `auth.refresh`. */
    lifetime: TokenLifetime;
  }) {
    this.id = options.id;
    this.auth = options.auth;
    this.#socket = options.socket;
    this.#hub = options.hub;
    this.#limits = options.limits;
    this.#chat = options.chat ?? null;
    this.#lifetime = options.lifetime;
    this.#tokens = options.limits.requestBurst;
    this.log = options.log;
  }

  get open(): boolean {
    return this.#socket !== null;
  }

  get joined(): { streamId: number; role: Role; peerId: string } | null {
    return this.#joined;
  }

  /** Queues a parsed request; over the queue bound or the rate budget it is answered with an error at once. */
  enqueue(request: RequestFrame): void {
    if (!this.#takeToken()) {
      const retryAfterMs = Math.ceil(1000 / this.#limits.requestsPerSecond);
      this.reply(
        request.id,
        request.method,
        new RateLimitedError('too many requests on this connection', retryAfterMs),
      );
      return;
    }
    if (this.#queued >= this.#limits.maxQueuedRequests) {
      this.reply(
        request.id,
        request.method,
        new RateLimitedError(
          `more than ${this.#limits.maxQueuedRequests} requests waiting on this connection`,
          100,
        ),
      );
      return;
    }
    this.#queued++;
    this.#queue = this.#queue
      .then(() => this.#handle(request))
      .finally(() => {
        this.#queued--;
      });
  }

  /** Sends a response (result or error). Unknown errors are logged here and shown as "internal server error". */
  reply(id: RequestId | null, method: string, outcome: { result: unknown } | Error | ErrorBody): void {
    if ('result' in outcome) {
      this.send({ id: id as RequestId, ok: true, result: outcome.result } as ServerFrame);
      return;
    }
    let body: ErrorBody;
    if (outcome instanceof Error) {
      const error: VezaError = toVezaError(outcome);
      if (error.code === 'internal')
        this.log.error({ err: error.cause ?? outcome, method }, 'request failed');
      body = {
        code: error.code,
        message: error.code === 'internal' ? INTERNAL_MESSAGE : error.message,
        ...(outcome instanceof SignalingConditionError ? { reason: outcome.reason } : {}),
        ...(error.details.field === undefined ? {} : { field: error.details.field }),
        ...(error.details.retryAfterMs === undefined ? {} : { retryAfterMs: error.details.retryAfterMs }),
      };
    } else {
      body = outcome;
    }
    wsRequests.inc({ method: isKnown(method) ? method : 'unknown', code: body.code });
    this.send({ id, ok: false, error: body });
  }

  send(frame: ServerFrame): void {
    this.#socket?.send(JSON.stringify(frame));
  }

  subscribe(topic: string): void {
    this.#socket?.subscribe(topic);
  }

  unsubscribe(topic: string): void {
    this.#socket?.unsubscribe(topic);
  }

  /** Ends the connection from the server side (the close handler then runs `closed()`). */
  end(code: number, reason: string): void {
    this.#socket?.end(code, reason);
  }

  /** The socket is gone: release its media. Requests still queued find the session closed. */
  async closed(): Promise<void> {
    this.#lifetime.stop();
    this.#socket = null;
    // A replaced broadcaster is not "gone": no grace period for the stream.
    await this.#leave(this.#replaced ? 'replaced' : 'disconnected');
    await this.#chat?.closed();
  }

  /** The stream ended: forget its media (the hub already told the client and closes the stream). */
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

  /** A newer connection of the broadcaster took the stream over. */
  replaced(): void {
    this.#replaced = true;
    this.end(CLOSE_CODES.replaced, 'replaced by a newer broadcaster connection');
  }

  async #handle(request: RequestFrame): Promise<void> {
    if (!this.open) return;
    const started = performance.now();
    try {
      const { method } = request;
      let result: unknown;
      if (method === 'auth.refresh') {
        // The connection's own token, for media and chat alike (./token-lifetime.ts).
        result = await this.#lifetime.refresh((request.params as MethodParams['auth.refresh']).token);
      } else if (isChatMethod(method)) {
        this.#lifetime.check();
        if (!this.#chat) throw new UnimplementedError('chat is not enabled on this edge');
        result = await this.#chat.handle(method, request.params as MethodParams[typeof method]);
      } else {
        this.#lifetime.check();
        const handler = this.#handlers[method] as (params: unknown) => Promise<unknown>;
        result = await handler(request.params);
      }
      wsRequests.inc({ method: request.method, code: 'ok' });
      this.reply(request.id, request.method, { result });
    } catch (error) {
      this.reply(request.id, request.method, error as Error);
    } finally {
      wsRequestDuration.observe({ method: request.method }, (performance.now() - started) / 1000);
    }
  }

  #takeToken(): boolean {
    const now = performance.now();
    const { requestsPerSecond, requestBurst } = this.#limits;
    this.#tokens = Math.min(
      requestBurst,
      this.#tokens + ((now - this.#refilledAt) / 1000) * requestsPerSecond,
    );
    this.#refilledAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  #require(method: Method): Joined {
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
    const ended = error.code === 'failed_precondition' && this.#hub.isEnded(joined.streamId);
    if (ended || reason === MEDIA_FAILURE.streamEnded) return streamEnded(joined.streamId);
    if (reason === MEDIA_FAILURE.noAudio) return noAudio(joined.streamId);
    return error;
  }

  async #leave(cause: LeaveCause): Promise<void> {
    this.#endedStreamId = null;
    const joined = this.#joined;
    if (!joined) return;
    this.#joined = null;
    this.#hub.left(this, joined.streamId, joined.role, cause, joined.meta);
    try {
      await joined.media.closePeer(joined.peerId);
    } catch (error) {
      this.log.warn({ err: error, peerId: joined.peerId }, 'could not close the media peer');
    }
  }

  readonly #handlers: Handlers = {
    join: async ({ streamId, role }) => {
      const { auth } = this;
      if (auth.kind === 'listener') {
        if (role !== 'listener') throw new PermissionDeniedError('a listener token can only listen');
        if (auth.streamId !== streamId) {
          throw new PermissionDeniedError(
            `this listener token is for stream ${auth.streamId}, not ${streamId}`,
          );
        }
      }
      const meta = await this.#hub.streamMeta(this, streamId, this.#authorized.get(streamId));
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
      await this.#leave('rejoin');
      if (!this.open) throw new FailedPreconditionError('connection closed');

      const media = this.#hub.media(meta);
      const opened = await media.openStream(String(streamId));
      if (this.#hub.isEnded(streamId)) {
        // It ended while we opened it: do not leave a router open for a stream nobody will close.
        await media.closeStream(String(streamId)).catch(() => undefined);
        throw streamEnded(streamId);
      }
      // `<edgeId>:<bootId>:`: unique per edge run, and how the media node finds this edge's peers when it is gone.
      const peerId = `${this.#hub.peerPrefix}${this.id}:${++this.#joins}`;
      const joined: Joined = {
        streamId,
        role,
        peerId,
        media,
        meta,
        transports: new Map(),
        consumers: new Set(),
        producerId: null,
      };
      if (role === 'broadcaster') await this.#hub.claimBroadcaster(this, joined.streamId, media, peerId);
      if (!this.open) {
        await media.closePeer(peerId).catch(() => undefined);
        throw new FailedPreconditionError('connection closed');
      }
      this.#joined = joined;
      this.#hub.joined(this, streamId, role);
      const listenerCount = await media.listenerCount(String(streamId)).catch(() => 0);
      return {
        peerId,
        streamId,
        role,
        rtpCapabilities: sameJson<RtpCapabilities>(opened.rtpCapabilities),
        iceServers: this.#hub.iceServers(this.auth.userId),
        listenerCount,
        stream: { title: meta.title, ownerId: meta.ownerId, ownerUsername: meta.ownerUsername },
      };
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
      return {
        id: info.transportId,
        iceParameters: info.iceParameters,
        iceCandidates: sameJson<IceCandidate[]>(info.iceCandidates),
        dtlsParameters: sameJson<DtlsParameters>(info.dtlsParameters),
        iceServers: this.#hub.iceServers(this.auth.userId),
      };
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
      return {
        consumerId: result.consumerId,
        producerId: result.producerId,
        kind: 'audio',
        rtpParameters: sameJson<RtpParameters>(result.rtpParameters),
        paused: true,
      };
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
}

/**
 * mediasoup (server) and mediasoup-client declare the same JSON shapes with slightly different
 * TypeScript types (string unions vs strings); the values are passed through unchanged.
 */
const sameJson = <T>(value: unknown): T => value as T;

const KNOWN = new Set<string>([
  'join',
  'getRouterRtpCapabilities',
  'createTransport',
  'connectTransport',
  'produce',
  'consume',
  'pauseProducer',
  'resumeProducer',
  'resumeConsumer',
  'pauseConsumer',
  'restartIce',
  'getStats',
  'leave',
]);
/** Metric labels stay bounded: unknown method names are not echoed into them. */
const isKnown = (method: string) => KNOWN.has(method) || isChatMethod(method);

type MediaPeerStats = Awaited<ReturnType<MediaNodeApi['getStats']>>;

/** The wire shape is the protocol's, so a change inside the media node does not silently change it. */
function toProtocolStats(stats: MediaPeerStats): PeerStats {
  return {
    transports: stats.transports.map((t) => ({
      transportId: t.transportId,
      direction: t.direction,
      iceState: t.iceState,
      dtlsState: t.dtlsState,
      bytesReceived: t.bytesReceived,
      bytesSent: t.bytesSent,
      recvBitrateBps: t.recvBitrateBps,
      sendBitrateBps: t.sendBitrateBps,
    })),
    producer: stats.producer
      ? {
          producerId: stats.producer.producerId,
          paused: stats.producer.paused,
          score: stats.producer.score,
          packetLoss: stats.producer.packetLoss,
          packetsLost: stats.producer.packetsLost,
          bitrateBps: stats.producer.bitrateBps,
          roundTripTimeMs: stats.producer.roundTripTimeMs,
          jitter: stats.producer.jitter,
        }
      : null,
    consumers: stats.consumers.map((c) => ({
      consumerId: c.consumerId,
      producerId: c.producerId,
      paused: c.paused,
      producerPaused: c.producerPaused,
      score: c.score,
      producerScore: c.producerScore,
      packetLoss: c.packetLoss,
      packetsLost: c.packetsLost,
      bitrateBps: c.bitrateBps,
      roundTripTimeMs: c.roundTripTimeMs,
    })),
  };
}
