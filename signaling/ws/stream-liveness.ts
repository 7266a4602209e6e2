/**
 * Whether the streams this edge sees still have a broadcaster, and the stream lifecycle events of
 * the bus (docs/signaling.md, "Lifecycle duties of the edge"):
 *
 * - grace periods: a broadcaster who leaves or disconnects (or goes live and never joins, or
 *   whose producer closed while they are not here) has STREAM_GRACE_S to come back through any
 *   edge before the stream is stopped (`StopStream`, reason `broadcaster_disconnected`);
 * - adoption: a starting edge gives every live stream a grace period (./adoption.ts);
 * - the broadcaster claim: a broadcaster joining here announces itself
 *   (`signaling.broadcaster.<id>`), which cancels the other edges' timers and replaces their
 *   older connection of the broadcaster;
 * - ended and moved streams (`stream.ended`, `stream.moved`): this is the one place of the edge
 *   that remembers them (./stream-memory.ts); the rest asks isEnded / movedTo, and watchers
 *   (the media event fan-out) hear of each;
 * - what joins need (./stream-lookup.ts): every `stream.*` event and listed stream goes there too.
 */
import {
  ALL_BROADCASTERS,
  broadcasterEventSchema,
  broadcasterSubject,
  MEDIA_NODE_LOST,
  type MediaNodeApi,
  type ProducerCloseReason,
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
import type { StreamInfo } from '../../proto/gen/veza/stream/stream.js';
import { LiveStreamAdoption } from './adoption.js';
import { type GraceStream, GraceTimers } from './grace-timers.js';
import type { MediaGateway } from './media-gateway.js';
import { wsGraceStops } from './metrics.js';
import type { StreamLookup } from './stream-lookup.js';
import { StreamMemory } from './stream-memory.js';
import type { HostedStream, LeaveCause, StreamMember, StreamRegistry } from './stream-registry.js';

export interface StreamLivenessOptions {
  bus: EventBus;
  controlPlane: Pick<ControlPlaneClient, 'stream'>;
  media: Pick<MediaGateway, 'node'>;
  /** This edge's connections in each stream. */
  streams: Pick<StreamRegistry, 'hasBroadcaster' | 'replaceBroadcaster' | 'end' | 'count'>;
  /** The edge's record of what joins need (./stream-lookup.ts), fed from the same events. */
  directory: Pick<StreamLookup, 'started' | 'listed' | 'ended' | 'moved'>;
  edgeId: string;
  graceMs: number;
  log: Logger;
}

/** Hears of the streams that end or move (after the edge has recorded it). */
export interface StreamFateWatcher {
  ended(streamId: number): void;
  moved(streamId: number, mediaNodeId: string): void;
}

export class StreamLiveness {
  readonly #options: StreamLivenessOptions;
  readonly #log: Logger;
  readonly #memory = new StreamMemory();
  readonly #grace: GraceTimers;
  readonly #adoption: LiveStreamAdoption;
  readonly #watchers = new Set<StreamFateWatcher>();
  readonly #subscriptions: Subscription[] = [];
  #closing = false;

  constructor(options: StreamLivenessOptions) {
    this.#options = options;
    this.#log = options.log;
    this.#grace = new GraceTimers({
      graceMs: options.graceMs,
      log: options.log,
      expired: (stream) => void this.#graceExpired(stream),
    });
    this.#adoption = new LiveStreamAdoption({
      controlPlane: options.controlPlane,
      log: options.log,
      adopt: (info) => this.#adopt(info),
    });
  }

  /** Subscribes to the stream events of the bus; resolves once the bus routes them to us. */
  async start(): Promise<void> {
    const { bus } = this.#options;
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
        if (!parsed.success || parsed.data.edgeId === this.#options.edgeId) return;
        // The broadcaster is back on another edge: no grace stop, and our old connection of theirs goes.
        this.#grace.cancel(parsed.data.streamId);
        this.#options.streams.replaceBroadcaster(parsed.data.streamId);
      }),
    );
    await Promise.all(this.#subscriptions.map((subscription) => subscription.ready));
    // After the subscriptions: a stream that ends, or whose broadcaster shows up elsewhere,
    // once it is listed still reaches us. In the background: the edge starts without the
    // control plane and keeps asking it.
    void this.#adoption.run();
  }

  isEnded(streamId: number): boolean {
    return this.#memory.isEnded(streamId);
  }

  /** The media node the stream moved to, when a move was seen (a connection may know an older one). */
  movedTo(streamId: number): string | undefined {
    return this.#memory.movedTo(streamId);
  }

  /** Tells `watcher` of every stream that ends or moves from now on; returns the function that stops it. */
  watch(watcher: StreamFateWatcher): () => void {
    this.#watchers.add(watcher);
    return () => {
      this.#watchers.delete(watcher);
    };
  }

  /** A broadcaster connection joined here (StreamRegistry): the stream has its broadcaster. */
  broadcasterJoined(streamId: number): void {
    this.#grace.cancel(streamId);
  }

  /** This edge's broadcaster connection left the stream (StreamRegistry). */
  broadcasterLeft(stream: HostedStream, cause: LeaveCause): void {
    // Replaced by a newer connection, or the stream is over: nobody to wait for.
    if (cause === 'disconnected' || cause === 'left') this.#startGrace(stream);
  }

  /**
   * The broadcaster's audio is gone. Their edge times the stream out when their connection goes
   * (`broadcasterLeft`), but that edge may be gone itself: it crashed and the media node closed
   * its peers (reason `edge-lost`), or the client closed its transport meanwhile. No other edge
   * has a timer (the broadcaster announced itself), so every edge without the broadcaster starts
   * one; whichever edge they come back through cancels them all, and each asks the media node
   * before stopping. A producer replaced by the same peer, or closed with its stream, needs none.
   */
  producerClosed(stream: HostedStream, reason: ProducerCloseReason): void {
    if (reason === 'replaced' || reason === 'stream-ended') return;
    if (this.#options.streams.hasBroadcaster(stream.streamId)) return;
    this.#startGrace(stream, `broadcaster's producer closed (${reason}): grace period started`);
  }

  /**
   * Makes `claimant` the stream's one broadcaster: any other connection of theirs, here or on
   * another edge, is replaced, and the previous broadcaster peer is closed in the media node so
   * the new one can produce at once.
   */
  async claimBroadcaster(
    claimant: StreamMember,
    streamId: number,
    media: MediaNodeApi,
    peerId: string,
  ): Promise<void> {
    this.#options.streams.replaceBroadcaster(streamId, claimant);
    this.#grace.cancel(streamId);
    const info = await media.getStreamInfo(String(streamId)).catch(() => null);
    if (info?.broadcasterPeerId && info.broadcasterPeerId !== peerId) {
      await media.closePeer(info.broadcasterPeerId).catch((error: unknown) => {
        this.#log.warn({ err: error, streamId }, 'could not close the previous broadcaster peer');
      });
    }
    await this.#options.bus
      .publish(broadcasterSubject(streamId), { edgeId: this.#options.edgeId, streamId, peerId })
      .catch((error: unknown) =>
        this.#log.warn({ err: error, streamId }, 'could not announce the broadcaster'),
      );
  }

  close(): void {
    this.#closing = true;
    for (const subscription of this.#subscriptions) subscription.unsubscribe();
    this.#grace.close();
    this.#adoption.close();
    this.#watchers.clear();
  }

  /**
   * The control plane moved the stream to another media node (its own was lost): its clients join
   * again (the watchers tell them), which opens it there. Grace timers ask the new node, and a
   * connection whose token has expired re-joins on the new node too (StreamLookup).
   */
  #streamMoved(streamId: number, mediaNodeId: string): void {
    if (this.#memory.isEnded(streamId)) return;
    this.#memory.markMoved(streamId, mediaNodeId);
    this.#options.directory.moved(streamId, mediaNodeId);
    this.#grace.retarget(streamId, mediaNodeId);
    for (const watcher of [...this.#watchers]) watcher.moved(streamId, mediaNodeId);
    this.#log.info(
      { streamId, mediaNodeId, sessions: this.#options.streams.count(streamId) },
      'stream moved to another media node: its clients join again',
    );
  }

  async #streamEnded(streamId: number, reason: string, mediaNodeId: string): Promise<void> {
    this.#memory.markEnded(streamId);
    this.#options.directory.ended(streamId);
    this.#grace.cancel(streamId);
    for (const watcher of [...this.#watchers]) watcher.ended(streamId);
    const sessions = await this.#options.streams.end(streamId, reason);
    // Its media node is gone: there is nothing to close.
    if (reason === MEDIA_NODE_LOST) {
      this.#log.info({ streamId, reason, sessions }, 'stream ended: listeners notified');
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
    this.#log.info({ streamId, reason, sessions }, 'stream ended: listeners notified');
  }

  /**
   * Every edge starts the grace timer of a new stream: whichever edge the broadcaster joins
   * cancels its own and announces it (`signaling.broadcaster.<id>`), which cancels the others.
   */
  #streamStarted(event: StreamStartedEvent): void {
    const streamId = event.stream_id;
    this.#options.directory.started(event);
    // Already here (the event came late), or a late event of a stream that ended since.
    if (this.#options.streams.hasBroadcaster(streamId) || this.#memory.isEnded(streamId)) return;
    this.#startGrace(
      { streamId, mediaNodeId: event.media_node_id ?? '' },
      'stream started: waiting for its broadcaster',
    );
  }

  /**
   * Starts the grace timer of a live stream the control plane lists (./adoption.ts) that has no
   * broadcaster on this edge; false when this edge has nothing to wait for. After an edge restart
   * nothing else would ever end a stream whose broadcaster was on the old edge and never comes back.
   *
   * Every edge adopts every live stream, including those whose broadcaster is connected to
   * another edge, and no bus event cancels that timer (the broadcaster announced itself
   * before this edge subscribed). That is correct whichever edge fires, because the stop
   * decision in #graceExpired does not rest on the firing edge's local view: it asks the
   * stream's media node, shared by all edges, whether anyone produces now, and StopStream is
   * idempotent (two edges stopping the same orphan end it once). A broadcaster producing
   * through any edge keeps the stream; one that comes back within the grace cancels the timer
   * (here: `broadcasterJoined`; elsewhere: `signaling.broadcaster.<id>`). What is left is what
   * the check itself trusts, as for the other timers: a broadcaster connected elsewhere but
   * without a producer at that instant (re-negotiating after a worker restart), or a media
   * node that cannot be reached, counts as nobody producing; and a producer the media node
   * still holds for a connection of an edge that crashed counts as someone producing.
   */
  #adopt(info: StreamInfo): boolean {
    const { streamId } = info;
    if (this.#closing || info.status !== 'live') return false;
    this.#options.directory.listed(info);
    // Ended since, its broadcaster is here, or a timer runs already (stream.started): leave it.
    if (
      this.#memory.isEnded(streamId) ||
      this.#options.streams.hasBroadcaster(streamId) ||
      this.#grace.has(streamId)
    ) {
      return false;
    }
    this.#startGrace(
      { streamId, mediaNodeId: info.mediaNodeId },
      'live stream adopted: waiting for its broadcaster',
    );
    return true;
  }

  #startGrace(stream: HostedStream, message = 'broadcaster gone: grace period started'): void {
    if (this.#closing || this.#memory.isEnded(stream.streamId)) return;
    // On the newest node known: what the caller knew may predate a move.
    const mediaNodeId = this.#memory.movedTo(stream.streamId) ?? stream.mediaNodeId;
    this.#grace.start({ streamId: stream.streamId, mediaNodeId }, message);
  }

  async #graceExpired(stream: GraceStream): Promise<void> {
    const { streamId } = stream;
    if (this.#closing || this.#memory.isEnded(streamId) || this.#options.streams.hasBroadcaster(streamId)) {
      return;
    }
    // The media node knows whether anyone produces now, wherever they connected. A stream nobody
    // joined may not be open there (not_found), or have no media node the gateway can reach.
    const info = await Promise.resolve()
      .then(() => this.#options.media.node(stream.mediaNodeId).getStreamInfo(String(streamId)))
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
