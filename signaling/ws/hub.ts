import {
  ALL_BROADCASTERS,
  broadcasterEventSchema,
  broadcasterSubject,
  edgePeerPrefix,
  MEDIA_NODE_LOST,
  type MediaNodeApi,
  STREAM_ENDED,
  STREAM_MOVED,
  STREAM_STARTED,
  type StreamStartedEvent,
  streamEndedEventSchema,
  streamMovedEventSchema,
  streamStartedEventSchema,
  toVezaError,
} from '../../common/contracts/index.js';
import type { Logger } from '../../common/index.js';
import type { EventBus, Subscription } from '../../common/ports/index.js';
import type { ControlPlaneClient } from '../../control-plane/client/index.js';
import type { ListStreamsResponse, StreamInfo } from '../../proto/gen/veza/stream/stream.js';
import type {
  IceServer,
  NotificationFrame,
  NotificationName,
  Notifications,
  Role,
} from '../protocol/index.js';
import type { MediaGateway } from './media-gateway.js';
import { wsGraceStops, wsNotifications } from './metrics.js';
import type { LeaveCause, PeerSession } from './peer-session.js';
import { keyedThrottle } from './throttle.js';

export interface StreamMeta {
  streamId: number;
  ownerId: number;
  ownerUsername: string;
  title: string;
  /** "live" or "ended". */
  status: string;
  isPublic: boolean;
  allowAnonymous: boolean;
  mediaNodeId: string;
}

/** The part of the uWS app the hub uses. */
export interface TopicPublisher {
  publish(topic: string, message: string): boolean;
}

export interface HubOptions {
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
  log: Logger;
  /** Minimum gap between listener-count notifications of one stream (default 250 ms). */
  listenerNotifyMs?: number;
  /** Minimum gap between ReportListenerCount calls for one stream (default 1 s). */
  listenerReportMs?: number;
}

export const streamTopic = (streamId: number) => `stream/${streamId}`;
export const broadcasterTopic = (streamId: number) => `stream/${streamId}/broadcaster`;

/** How many ended stream ids the edge remembers (to refuse late joins and re-opens). */
const ENDED_MEMORY = 10_000;
/** How many moved streams' new media nodes the edge remembers (for connections re-joining on what they knew). */
const MOVED_MEMORY = 10_000;

/** ListStreams' largest page (LIST_MAX_LIMIT of the control plane's validation). */
const ADOPT_PAGE = 100;
/** Backoff between attempts to list the live streams at start while the control plane is unreachable. */
const ADOPT_RETRY_MIN_MS = 1_000;
const ADOPT_RETRY_MAX_MS = 30_000;

/** Exponential backoff (1 s, 2 s, 4 s, ... 30 s) with equal jitter, so restarted edges do not ask in step. */
function adoptRetryMs(attempt: number): number {
  const ceiling = Math.min(ADOPT_RETRY_MAX_MS, ADOPT_RETRY_MIN_MS * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}

function streamMetaOf(info: StreamInfo): StreamMeta {
  return {
    streamId: info.streamId,
    ownerId: info.ownerId,
    ownerUsername: info.ownerUsername,
    title: info.title,
    status: info.status,
    isPublic: info.isPublic,
    allowAnonymous: info.allowAnonymous,
    mediaNodeId: info.mediaNodeId,
  };
}

/** What a grace timer needs of its stream. */
type GraceStream = Pick<StreamMeta, 'streamId' | 'mediaNodeId'>;

interface GraceTimer {
  timer: ReturnType<typeof setTimeout>;
  stream: GraceStream;
}

export class SignalingHub {
  readonly edgeId: string;
  /** Every media peer id this edge makes starts with it (bus-protocol.ts's edgePeerPrefix). */
  readonly peerPrefix: string;
  readonly iceServers: (userId: number) => IceServer[];
  readonly #options: HubOptions;
  readonly #log: Logger;
  readonly #sessions = new Map<number, Set<PeerSession>>();
  readonly #broadcasters = new Map<number, PeerSession>();
  readonly #grace = new Map<number, GraceTimer>();
  readonly #ended = new Set<number>();
  /** Stream id -> the media node it moved to (stream.moved), newest last. */
  readonly #moved = new Map<number, string>();
  readonly #subscriptions: Subscription[] = [];
  readonly #offs: Array<() => void> = [];
  /** Wakes the adoption loop's pending backoff, so close() does not wait for it. */
  readonly #wakeups = new Set<() => void>();
  readonly #notifyCount;
  readonly #reportCount;
  #closing = false;

  constructor(options: HubOptions) {
    this.#options = options;
    this.edgeId = options.edgeId;
    this.peerPrefix = edgePeerPrefix(options.edgeId, options.bootId);
    this.iceServers = options.iceServers;
    this.#log = options.log;
    this.#notifyCount = keyedThrottle<number, number>(options.listenerNotifyMs ?? 250, (streamId, count) =>
      this.notify(streamId, 'listenerCount', { streamId, count }),
    );
    this.#reportCount = keyedThrottle<number, number>(options.listenerReportMs ?? 1000, (streamId, count) => {
      if (this.#ended.has(streamId)) return;
      options.controlPlane.stream
        .reportListenerCount({ streamId, listenerCount: count })
        .catch((error: unknown) => {
          this.#log.warn({ err: error, streamId }, 'could not report the listener count');
        });
    });
  }

  /** Subscribes to the bus and the media nodes; resolves once the bus routes to us. */
  async start(): Promise<void> {
    const { bus, media } = this.#options;
    this.#subscriptions.push(
      bus.subscribe(STREAM_STARTED, (payload) => {
        const parsed = streamStartedEventSchema.safeParse(payload);
        if (!parsed.success) {
          this.#log.warn(
            { issue: parsed.error.issues[0]?.message },
            'ignoring a malformed stream.started event',
          );
          return;
        }
        this.#streamStarted(parsed.data);
      }),
      bus.subscribe(STREAM_ENDED, (payload) => {
        const parsed = streamEndedEventSchema.safeParse(payload);
        if (!parsed.success) {
          this.#log.warn(
            { issue: parsed.error.issues[0]?.message },
            'ignoring a malformed stream.ended event',
          );
          return;
        }
        void this.#streamEnded(parsed.data.stream_id, parsed.data.reason, parsed.data.media_node_id ?? '');
      }),
      bus.subscribe(STREAM_MOVED, (payload) => {
        const parsed = streamMovedEventSchema.safeParse(payload);
        if (!parsed.success) {
          this.#log.warn(
            { issue: parsed.error.issues[0]?.message },
            'ignoring a malformed stream.moved event',
          );
          return;
        }
        this.#streamMoved(parsed.data.stream_id, parsed.data.media_node_id);
      }),
      bus.subscribe(ALL_BROADCASTERS, (payload) => {
        const parsed = broadcasterEventSchema.safeParse(payload);
        if (!parsed.success || parsed.data.edgeId === this.edgeId) return;
        // The broadcaster is back on another edge: no grace stop, and our old connection of theirs goes.
        this.#cancelGrace(parsed.data.streamId);
        this.#broadcasters.get(parsed.data.streamId)?.replaced();
      }),
    );
    const id = (streamId: string): number | null => {
      const value = Number(streamId);
      return Number.isSafeInteger(value) && value > 0 ? value : null;
    };
    this.#offs.push(
      media.on('producerOpened', (event) => {
        const streamId = id(event.streamId);
        if (streamId) this.notify(streamId, 'streamStarted', { streamId, producerId: event.producerId });
      }),
      media.on('producerClosed', (event, nodeId) => {
        const streamId = id(event.streamId);
        if (!streamId) return;
        this.notify(streamId, 'producerClosed', { streamId, producerId: event.producerId });
        // The broadcaster's audio is gone. Their edge times the stream out when their connection
        // goes (`left`), but that edge may be gone itself: it crashed and the media node closed
        // its peers (reason `edge-lost`), or the client closed its transport meanwhile. No other
        // edge has a timer (the broadcaster announced itself), so every edge without the
        // broadcaster starts one; whichever edge they come back through cancels them all, and
        // each asks the media node before stopping. A producer replaced by the same peer, or
        // closed with its stream, needs none.
        const reason = event.reason;
        if (reason !== 'replaced' && reason !== 'stream-ended' && !this.#broadcasters.has(streamId)) {
          this.#startGrace(
            { streamId, mediaNodeId: nodeId },
            `broadcaster's producer closed (${reason}): grace period started`,
          );
        }
      }),
      media.on('producerPaused', (event) => {
        const streamId = id(event.streamId);
        if (!streamId) return;
        const data = { streamId, producerId: event.producerId };
        this.notify(streamId, event.paused ? 'producerPaused' : 'producerResumed', data);
      }),
      media.on('listenerCount', (event) => {
        const streamId = id(event.streamId);
        if (!streamId || this.#ended.has(streamId)) return;
        this.#notifyCount.push(streamId, event.count);
        this.#reportCount.push(streamId, event.count);
      }),
      media.on('audioLevel', (event) => {
        const streamId = id(event.streamId);
        if (!streamId) return;
        this.notify(
          streamId,
          'audioLevel',
          { streamId, volume: event.volumeDbov, speaking: event.speaking },
          { broadcasterOnly: true },
        );
      }),
      media.on('workerReplaced', (event) => {
        for (const raw of event.affectedStreamIds) {
          const streamId = id(raw);
          if (streamId) this.notify(streamId, 'workerRestarted', { streamId, reconnect: true });
        }
      }),
    );
    await Promise.all(this.#subscriptions.map((subscription) => subscription.ready));
    // After the subscriptions: a stream that ends, or whose broadcaster shows up elsewhere,
    // once it is listed still reaches us. In the background: the edge starts without the
    // control plane and keeps asking it.
    void this.#adoptLiveStreams();
  }

  media(meta: Pick<StreamMeta, 'mediaNodeId'>): MediaNodeApi {
    return this.#options.media.node(meta.mediaNodeId);
  }

  isEnded(streamId: number): boolean {
    return this.#ended.has(streamId);
  }

  /**
   * The stream as the caller may see it. With the user's token while it is valid (a private
   * stream is visible to its owner); as the service otherwise. A connection that was already
   * allowed into the stream keeps that right when its token has expired meanwhile (a re-join
   * after a worker restart), unless the stream has ended.
   */
  async streamMeta(session: PeerSession, streamId: number, known?: StreamMeta): Promise<StreamMeta> {
    const { token, expiresAt } = session.auth;
    const context = token && expiresAt - 5_000 > Date.now() ? { token } : {};
    try {
      const response = await this.#options.controlPlane.stream.getStreamInfo({ streamId }, context);
      const info = response.stream;
      if (!info) throw new Error('GetStreamInfo returned no stream');
      return streamMetaOf(info);
    } catch (error) {
      const code = toVezaError(error).code;
      if (known && (code === 'not_found' || code === 'unauthenticated')) {
        return {
          ...known,
          status: this.#ended.has(streamId) ? 'ended' : known.status,
          // What the connection knew may predate a move to another media node.
          mediaNodeId: this.#moved.get(streamId) ?? known.mediaNodeId,
        };
      }
      throw error;
    }
  }

  joined(session: PeerSession, streamId: number, role: Role): void {
    let set = this.#sessions.get(streamId);
    if (!set) {
      set = new Set();
      this.#sessions.set(streamId, set);
    }
    set.add(session);
    session.subscribe(streamTopic(streamId));
    if (role === 'broadcaster') {
      session.subscribe(broadcasterTopic(streamId));
      this.#broadcasters.set(streamId, session);
      this.#cancelGrace(streamId);
    }
  }

  left(session: PeerSession, streamId: number, role: Role, cause: LeaveCause, meta: StreamMeta): void {
    const set = this.#sessions.get(streamId);
    set?.delete(session);
    if (set?.size === 0) this.#sessions.delete(streamId);
    session.unsubscribe(streamTopic(streamId));
    if (role !== 'broadcaster') return;
    session.unsubscribe(broadcasterTopic(streamId));
    if (this.#broadcasters.get(streamId) !== session) return;
    this.#broadcasters.delete(streamId);
    if (cause === 'disconnected' || cause === 'left') this.#startGrace(meta);
  }

  /**
   * Makes `session` the stream's one broadcaster: any other connection of theirs, here or on
   * another edge, is replaced, and the previous broadcaster peer is closed in the media node so
   * the new one can produce at once.
   */
  async claimBroadcaster(
    session: PeerSession,
    streamId: number,
    media: MediaNodeApi,
    peerId: string,
  ): Promise<void> {
    const previous = this.#broadcasters.get(streamId);
    if (previous && previous !== session) previous.replaced();
    this.#cancelGrace(streamId);
    const info = await media.getStreamInfo(String(streamId)).catch(() => null);
    if (info?.broadcasterPeerId && info.broadcasterPeerId !== peerId) {
      await media.closePeer(info.broadcasterPeerId).catch((error: unknown) => {
        this.#log.warn({ err: error, streamId }, 'could not close the previous broadcaster peer');
      });
    }
    await this.#options.bus
      .publish(broadcasterSubject(streamId), { edgeId: this.edgeId, streamId, peerId })
      .catch((error: unknown) =>
        this.#log.warn({ err: error, streamId }, 'could not announce the broadcaster'),
      );
  }

  notify<N extends NotificationName>(
    streamId: number,
    notification: N,
    data: Notifications[N],
    options: { broadcasterOnly?: boolean } = {},
  ): void {
    if (this.#closing) return;
    const frame = { notification, data } as NotificationFrame;
    const topic = options.broadcasterOnly ? broadcasterTopic(streamId) : streamTopic(streamId);
    this.#options.app.publish(topic, JSON.stringify(frame));
    wsNotifications.inc({ notification });
  }

  async close(): Promise<void> {
    this.#closing = true;
    for (const subscription of this.#subscriptions) subscription.unsubscribe();
    for (const off of this.#offs) off();
    for (const { timer } of this.#grace.values()) clearTimeout(timer);
    this.#grace.clear();
    for (const wake of [...this.#wakeups]) wake();
    this.#notifyCount.close();
    this.#reportCount.close();
  }

  #markEnded(streamId: number): void {
    this.#ended.add(streamId);
    if (this.#ended.size > ENDED_MEMORY) {
      const oldest = this.#ended.values().next().value;
      if (oldest !== undefined) this.#ended.delete(oldest);
    }
  }

  /**
   * The control plane moved the stream to another media node (its own was lost): its clients join
   * again, which opens it there. Grace timers ask the new node, and a connection whose token has
   * expired re-joins on the new node too (streamMeta).
   */
  #streamMoved(streamId: number, mediaNodeId: string): void {
    if (this.#ended.has(streamId)) return;
    this.#moved.delete(streamId);
    this.#moved.set(streamId, mediaNodeId);
    if (this.#moved.size > MOVED_MEMORY) {
      const oldest = this.#moved.keys().next().value;
      if (oldest !== undefined) this.#moved.delete(oldest);
    }
    const grace = this.#grace.get(streamId);
    if (grace) grace.stream.mediaNodeId = mediaNodeId;
    this.notify(streamId, 'workerRestarted', { streamId, reconnect: true });
    this.#log.info(
      { streamId, mediaNodeId, sessions: this.#sessions.get(streamId)?.size ?? 0 },
      'stream moved to another media node: its clients join again',
    );
  }

  async #streamEnded(streamId: number, reason: string, mediaNodeId: string): Promise<void> {
    this.#markEnded(streamId);
    this.#moved.delete(streamId);
    this.#cancelGrace(streamId);
    this.#notifyCount.forget(streamId);
    this.#reportCount.forget(streamId);
    // Sent to each session, not published to the topic: uWS delivers topic messages when it
    // next drains its queues, and the sessions unsubscribe right below, which would drop it.
    const sessions = [...(this.#sessions.get(streamId) ?? [])];
    const frame: NotificationFrame = { notification: 'streamEnded', data: { streamId, reason } };
    for (const session of sessions) session.send(frame);
    wsNotifications.inc({ notification: 'streamEnded' });
    await Promise.all(sessions.map((session) => session.streamEnded(streamId)));
    // Its media node is gone: there is nothing to close.
    if (reason === MEDIA_NODE_LOST) {
      this.#log.info({ streamId, reason, sessions: sessions.length }, 'stream ended: listeners notified');
      return;
    }
    try {
      await this.#options.media.node(mediaNodeId).closeStream(String(streamId));
    } catch (error) {
      // Never opened on the media node (nobody joined), or another edge closed it first.
      const code = toVezaError(error).code;
      if (code !== 'not_found')
        this.#log.warn({ err: error, streamId }, 'could not close the stream on its media node');
    }
    this.#log.info({ streamId, reason, sessions: sessions.length }, 'stream ended: listeners notified');
  }

  /**
   * Every edge starts the grace timer of a new stream: whichever edge the broadcaster joins
   * cancels its own and announces it (`signaling.broadcaster.<id>`), which cancels the others.
   */
  #streamStarted(event: StreamStartedEvent): void {
    const streamId = event.stream_id;
    // Already here (the event came late), or a late event of a stream that ended since.
    if (this.#broadcasters.has(streamId) || this.#ended.has(streamId)) return;
    this.#startGrace(
      { streamId, mediaNodeId: event.media_node_id ?? '' },
      'stream started: waiting for its broadcaster',
    );
  }

  /**
   * Starts the grace timer of every live stream the control plane lists that has no
   * broadcaster on this edge: after an edge restart nothing else would ever end a stream
   * whose broadcaster was on the old edge and never comes back.
   *
   * Every edge adopts every live stream, including those whose broadcaster is connected to
   * another edge, and no bus event cancels that timer (the broadcaster announced itself
   * before this edge subscribed). That is correct whichever edge fires, because the stop
   * decision in #graceExpired does not rest on the firing edge's local view: it asks the
   * stream's media node, shared by all edges, whether anyone produces now, and StopStream is
   * idempotent (two edges stopping the same orphan end it once). A broadcaster producing
   * through any edge keeps the stream; one that comes back within the grace cancels the timer
   * (here: `joined`; elsewhere: `signaling.broadcaster.<id>`). What is left is what the
   * check itself trusts, as for the other timers: a broadcaster connected elsewhere but
   * without a producer at that instant (re-negotiating after a worker restart), or a media
   * node that cannot be reached, counts as nobody producing; and a producer the media node
   * still holds for a connection of an edge that crashed counts as someone producing.
   *
   * The listing pages through every live stream, public and private (ListStreams with
   * include_private, as the service), until the control plane says it is complete. A page
   * that fails is asked for again with backoff; the pages already read stay adopted. A stream
   * that starts during the listing gets its timer from `stream.started`, subscribed before.
   */
  async #adoptLiveStreams(): Promise<void> {
    let pageToken = '';
    let failures = 0;
    let pages = 0;
    let listed = 0;
    let adopted = 0;
    while (!this.#closing) {
      let page: ListStreamsResponse;
      try {
        page = await this.#options.controlPlane.stream.listStreams({
          limit: ADOPT_PAGE,
          pageToken,
          includePrivate: true,
        });
      } catch (error) {
        if (this.#closing) return;
        failures += 1;
        const retryInMs = adoptRetryMs(failures);
        this.#log.warn(
          { err: error, attempt: failures, retryInMs, page: pages + 1 },
          'could not list the live streams to adopt; retrying',
        );
        await this.#sleep(retryInMs);
        continue;
      }
      failures = 0;
      pages += 1;
      listed += page.streams.length;
      for (const info of page.streams) if (this.#adopt(info)) adopted += 1;
      if (!page.nextPageToken) break;
      pageToken = page.nextPageToken;
    }
    if (!this.#closing) this.#log.info({ listed, adopted, pages }, 'live streams adopted');
  }

  /** Starts the grace timer of a listed live stream; false when this edge has nothing to wait for. */
  #adopt(info: StreamInfo): boolean {
    const streamId = info.streamId;
    if (this.#closing || info.status !== 'live') return false;
    // Ended since, its broadcaster is here, or a timer runs already (stream.started): leave it.
    if (this.#ended.has(streamId) || this.#broadcasters.has(streamId) || this.#grace.has(streamId)) {
      return false;
    }
    this.#startGrace(streamMetaOf(info), 'live stream adopted: waiting for its broadcaster');
    return true;
  }

  /** A timer close() cuts short. */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#wakeups.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      timer.unref?.();
      this.#wakeups.add(wake);
    });
  }

  #cancelGrace(streamId: number): void {
    const entry = this.#grace.get(streamId);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.#grace.delete(streamId);
  }

  #startGrace(meta: GraceStream, message = 'broadcaster gone: grace period started'): void {
    if (this.#closing || this.#ended.has(meta.streamId)) return;
    this.#cancelGrace(meta.streamId);
    // Its own copy, on the newest node known: a move of the stream updates it.
    const stream: GraceStream = {
      streamId: meta.streamId,
      mediaNodeId: this.#moved.get(meta.streamId) ?? meta.mediaNodeId,
    };
    const timer = setTimeout(() => {
      this.#grace.delete(stream.streamId);
      void this.#graceExpired(stream);
    }, this.#options.graceMs);
    timer.unref?.();
    this.#grace.set(stream.streamId, { timer, stream });
    this.#log.info({ streamId: stream.streamId, graceMs: this.#options.graceMs }, message);
  }

  async #graceExpired(meta: GraceStream): Promise<void> {
    const { streamId } = meta;
    if (this.#closing || this.#ended.has(streamId) || this.#broadcasters.has(streamId)) return;
    // The media node knows whether anyone produces now, wherever they connected. A stream nobody
    // joined may not be open there (not_found), or have no media node the gateway can reach.
    const info = await Promise.resolve()
      .then(() => this.media(meta).getStreamInfo(String(streamId)))
      .catch(() => null);
    if (info?.producerId) return;
    try {
      await this.#options.controlPlane.stream.stopStream({ streamId, reason: 'broadcaster_disconnected' });
      wsGraceStops.inc();
      this.#log.info({ streamId }, 'no broadcaster within the grace period: stream stopped');
    } catch (error) {
      this.#log.error({ err: error, streamId }, 'could not stop the stream after the grace period');
    }
  }
}
