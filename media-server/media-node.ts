/**
 * The in-process media node: the worker pool, the live streams on it, and the indexes that let the
 * JSON API find a transport, producer or consumer by id. Inputs are validated here (the boundary);
 * the domain objects below trust what they get.
 *
 * Close cascade: close() closes every stream (peers, transports, producers, consumers, routers), then
 * the pool (workers).
 */
import { EventEmitter } from 'node:events';
import type { types as ms } from 'mediasoup';
import {
  callerIdSchema,
  consumeRequestSchema,
  createTransportRequestSchema,
  dtlsParametersSchema,
  FailedPreconditionError,
  InvalidArgumentError,
  type JoinStreamRequest,
  type JoinStreamResult,
  joinStreamRequestSchema,
  MEDIA_FAILURE,
  NotFoundError,
  objectIdSchema,
  type PeerQuality,
  PermissionDeniedError,
  type PipeOutRequest,
  type PipeOutResult,
  type PullStreamRequest,
  type PullStreamResult,
  pipeOutRequestSchema,
  produceRequestSchema,
  pullStreamRequestSchema,
  qualityStatsPeersSchema,
  recordingManifestKey,
  type TransportDirection,
  type TransportInfo,
  UnavailableError,
  VezaError,
} from '../common/contracts/index.js';
import type { Config, Logger } from '../common/index.js';
import type { BlobStorage } from '../common/ports/index.js';
import type {
  ConsumeRequest,
  ConsumeResult,
  CreateTransportRequest,
  MediaNode,
  MediaNodeEventName,
  MediaNodeEvents,
  MediaNodeListener,
  MediaNodePlacementState,
  OpenStreamResult,
  ProduceRequest,
  ProduceResult,
  WorkerInfo,
} from './api.js';
import { defaultMaxListeners } from './capacity.js';
import { fromMediasoupError } from './errors.js';
import {
  type AudioLevelSettings,
  LiveStream,
  noAudioError,
  RELAY_PEER_PREFIX,
  type StreamInfo,
  streamEndedError,
} from './live-stream.js';
import { loadMediasoup } from './load-mediasoup.js';
import { MediaMetrics } from './metrics.js';
import { transportListenIp } from './network.js';
import type { MediaNodePeers } from './node-peers.js';
import type { Peer } from './peer.js';
import type { PeerTransport } from './peer-transport.js';
import { RecorderSession } from './recorder-session.js';
import { RecordingMetrics } from './recording-metrics.js';
import { asDtlsParameters, asRtpCapabilities, asRtpParameters, parseInput } from './schemas.js';
import { consumerStats, type PeerStats, producerStats } from './stats.js';
import { StreamRecorder } from './stream-recorder.js';
import { Tombstones } from './tombstones.js';
import { WorkerPool } from './worker-pool.js';

export interface StartMediaNodeOptions {
  config: Config;
  log: Logger;
  /** How often worker CPU and a slice of the transports' bytes are sampled into the metrics. Default 5 s. */
  statsIntervalMs?: number;
  audioLevels?: Partial<AudioLevelSettings>;
  /** How long calls wait for a stream whose origin worker died to be rebuilt. Default 10 s. */
  recoveryWaitMs?: number;
  workerLogLevel?: ms.WorkerLogLevel;
  /**
   * Where recordings go: a stream whose storage prefix holds a recording manifest (StartStream
   * wrote it) is recorded while its broadcaster produces here. Without it nothing is recorded.
   */
  blobs?: BlobStorage;
  /** The other media nodes (cluster mode): without them the node can neither pull a stream nor be asked for one back. */
  peers?: MediaNodePeers;
}

/** A stream pulled from another node: the local end of the pipe and the producer it feeds. */
interface RelayIn {
  source: string;
  transport: ms.PipeTransport;
  producer: ms.Producer;
  remotePipeId: string;
}

/** A pipe this node feeds for another node. */
interface PipeOut {
  streamId: string;
  toNodeId: string;
  transport: ms.PipeTransport;
}

/** Transports whose bytes are sampled per tick, one request at a time (see #sample). */
const STATS_SLICE = 50;

const DEFAULT_AUDIO_LEVELS: AudioLevelSettings = { intervalMs: 250, thresholdDbov: -80, speakingDbov: -50 };

type EventArgs = { [K in MediaNodeEventName]: [MediaNodeEvents[K]] };

export async function startMediaNode(options: StartMediaNodeOptions): Promise<MediaNode> {
  const { config } = options;
  const log = options.log.child({ component: 'media', nodeId: config.nodeId });
  const mediasoup = await loadMediasoup();
  const metrics = new MediaMetrics(config.nodeId);
  let node: LocalMediaNode | undefined;
  const pool = await WorkerPool.create({
    mediasoup,
    size: config.MEDIA_WORKERS,
    settings: {
      logLevel: options.workerLogLevel ?? 'warn',
      rtcMinPort: config.MEDIA_RTC_MIN_PORT,
      rtcMaxPort: config.MEDIA_RTC_MAX_PORT,
    },
    metrics,
    log,
    recover: (workerIndex) => node?.recoverWorker(workerIndex) ?? Promise.resolve([]),
  });
  node = new LocalMediaNode({ ...options, log }, pool, metrics);
  return node;
}

/** A peer's producer and consumer stats: what getStats adds transports to, and what qualityStats sends. */
async function peerQuality(peerId: string, peer: Peer): Promise<PeerQuality> {
  const [producer, consumers] = await Promise.all([
    peer.producer ? producerStats(peer.producer) : Promise.resolve(null),
    Promise.all(peer.consumers().map((consumer) => consumerStats(consumer))),
  ]);
  return { peerId, streamId: peer.streamId, producer, consumers };
}

class LocalMediaNode implements MediaNode {
  readonly nodeId: string;
  readonly #events = new EventEmitter<EventArgs>();
  readonly #pool: WorkerPool;
  readonly #metrics: MediaMetrics;
  readonly #log: Logger;
  readonly #config: Config;
  readonly #audioLevels: AudioLevelSettings;
  readonly #recoveryWaitMs: number;
  readonly #transportOptions: Omit<ms.WebRtcTransportOptions, 'appData'>;
  /** Where pipes to other nodes listen, and the address they give those nodes. */
  readonly #listenIp: ms.TransportListenIp;
  readonly #peersOf: MediaNodePeers | undefined;
  readonly #maxListeners: number;
  readonly #relayGraceMs: number;
  /** Recv transports on the node (every stream), counted from the moment one is asked for. */
  #listenerSlots = 0;
  #draining = false;
  readonly #relays = new Map<string, RelayIn>();
  readonly #pulling = new Map<string, Promise<PullStreamResult>>();
  readonly #pipesOut = new Map<string, PipeOut>();
  /** Stream id -> nodes this one pipes it to; kept across a new producer, so they can pull it again. */
  readonly #downstream = new Map<string, Set<string>>();
  /** Relayed streams nobody uses here, since when. */
  readonly #idleSince = new Map<string, number>();
  readonly #relaySweep: NodeJS.Timeout;
  readonly #streams = new Map<string, LiveStream>();
  readonly #blobs: BlobStorage | undefined;
  readonly #recordingMetrics: RecordingMetrics;
  /** The recorders of recorded streams, by stream id; a stream not recorded has none. */
  readonly #recorders = new Map<string, StreamRecorder>();
  /** Whether a stream is recorded (its manifest exists), asked once per stream opened here. */
  readonly #recorded = new Map<string, Promise<boolean>>();
  /** One ffmpeg ready to record (see #takeSpare); none without blob storage. */
  #spare: RecorderSession | undefined;
  readonly #opening = new Map<string, Promise<LiveStream>>();
  readonly #peers = new Map<string, Peer>();
  readonly #transports = new Map<string, PeerTransport>();
  readonly #producers = new Map<string, { producer: ms.Producer; streamId: string }>();
  readonly #consumers = new Map<string, ms.Consumer>();
  /** `stream:<id>` and `transport:<id>` of ended streams -> the stream id. */
  readonly #ended = new Tombstones<string>(10_000);
  /** Last sampled byte counters per transport, to turn totals into counter increments. */
  readonly #bytes = new Map<string, { received: number; sent: number }>();
  readonly #sampler: NodeJS.Timeout;
  #sampling = false;
  /** Where the round-robin byte sampling left off. */
  #lastSampled: string | undefined;
  /** Last sampled packet count per listener consumer, and where the consumer sampling left off. */
  readonly #packets = new Map<string, number>();
  #lastSampledConsumer: string | undefined;
  #closed = false;

  constructor(options: StartMediaNodeOptions, pool: WorkerPool, metrics: MediaMetrics) {
    this.nodeId = options.config.nodeId;
    this.#config = options.config;
    this.#log = options.log;
    this.#pool = pool;
    this.#metrics = metrics;
    this.#audioLevels = { ...DEFAULT_AUDIO_LEVELS, ...options.audioLevels };
    this.#recoveryWaitMs = options.recoveryWaitMs ?? 10_000;
    this.#blobs = options.blobs;
    this.#recordingMetrics = new RecordingMetrics(this.nodeId);
    if (options.blobs) this.#spare = this.#newSpare(options.blobs);
    const listenIp = transportListenIp({
      listenIp: options.config.MEDIA_LISTEN_IP,
      announcedAddress: options.config.MEDIA_ANNOUNCED_ADDRESS,
    });
    this.#log.info({ listenIp }, 'media node listening');
    // Pipes to other nodes may be reached at another address than the one listeners are given.
    const pipeAddress = options.config.MEDIA_PIPE_ANNOUNCED_ADDRESS;
    this.#listenIp = pipeAddress ? { ip: listenIp.ip, announcedIp: pipeAddress } : listenIp;
    this.#peersOf = options.peers;
    this.#maxListeners = options.config.MEDIA_NODE_MAX_LISTENERS ?? defaultMaxListeners(pool.size);
    this.#relayGraceMs = options.config.MEDIA_RELAY_GRACE_S * 1000;
    this.#relaySweep = setInterval(
      () => this.#releaseIdleRelays(),
      Math.min(1000, Math.max(50, this.#relayGraceMs / 4)),
    );
    this.#relaySweep.unref();
    this.#transportOptions = {
      listenIps: [listenIp],
      enableUdp: true,
      enableTcp: true,
      preferUdp: true,
    };
    pool.on('workerDied', (event) => this.#emit('workerDied', event));
    pool.on('workerReplaced', (event) => this.#emit('workerReplaced', event));
    this.#sampler = setInterval(() => void this.#sample(), options.statsIntervalMs ?? 5000);
    this.#sampler.unref();
  }

  on<K extends MediaNodeEventName>(event: K, listener: MediaNodeListener<K>): this {
    (this.#events as EventEmitter).on(event, listener);
    return this;
  }

  once<K extends MediaNodeEventName>(event: K, listener: MediaNodeListener<K>): this {
    (this.#events as EventEmitter).once(event, listener);
    return this;
  }

  off<K extends MediaNodeEventName>(event: K, listener: MediaNodeListener<K>): this {
    (this.#events as EventEmitter).off(event, listener);
    return this;
  }

  async openStream(streamId: string): Promise<OpenStreamResult> {
    const id = parseInput(callerIdSchema, streamId, 'streamId');
    const stream = await this.#open(id);
    const origin = stream.info().routers.find((router) => router.role === 'origin');
    return { streamId: id, workerIndex: origin?.workerIndex ?? -1, rtpCapabilities: stream.rtpCapabilities };
  }

  async closeStream(streamId: string): Promise<void> {
    const id = parseInput(callerIdSchema, streamId, 'streamId');
    const stream = this.#streams.get(id);
    if (!stream) {
      if (this.#ended.get(`stream:${id}`) !== undefined) return;
      throw new NotFoundError(`stream ${id} is not open on this media node`);
    }
    this.#endStream(stream, 'closed');
  }

  async getRouterRtpCapabilities(streamId: string): Promise<ms.RtpCapabilities> {
    return this.#stream(parseInput(callerIdSchema, streamId, 'streamId')).rtpCapabilities;
  }

  async joinStream(request: JoinStreamRequest): Promise<JoinStreamResult> {
    const input = parseInput(joinStreamRequestSchema, request);
    // Refused before the stream is opened here: a draining node must not start carrying a stream.
    if (this.#draining && input.role === 'listener' && !this.#streams.has(input.streamId)) {
      this.#metrics.listenerRefused('draining');
      throw new VezaError('unavailable', `media node ${this.nodeId} is draining and takes no new listeners`, {
        reason: MEDIA_FAILURE.draining,
      });
    }
    const stream = await this.#open(input.streamId);
    // Placement put the listener on a node that joins the stream's tree (or re-attaches) first.
    if (input.role === 'listener' && input.pullFrom && input.pullFrom !== this.nodeId)
      await this.pullStream({ streamId: input.streamId, sourceNodeId: input.pullFrom }).catch(
        (error: unknown) => {
          // Nobody produces at the source yet (its broadcaster is reconnecting): the source
          // counted this node downstream and asks it to pull when the audio comes; the listener
          // waits for it like any listener of a silent stream.
          if (error instanceof VezaError && error.details.reason === MEDIA_FAILURE.noAudio) return;
          throw error;
        },
      );
    const peer = this.#peer(stream, input.peerId);
    const direction = input.role === 'broadcaster' ? 'send' : 'recv';
    const transport = await this.#createTransport(stream, peer, direction);
    try {
      let consumer: ConsumeResult | null = null;
      if (direction === 'recv' && input.rtpCapabilities) {
        try {
          consumer = await this.#consume(stream, peer, transport, asRtpCapabilities(input.rtpCapabilities));
        } catch (error) {
          // Nobody produces right now: the listener is placed and consumes once the producer opens.
          if (!(error instanceof VezaError && error.details.reason === MEDIA_FAILURE.noAudio)) throw error;
        }
      }
      return {
        listenerCount: stream.activeListeners,
        transport: transport.info(),
        consumer,
      };
    } catch (error) {
      // A join fails as a whole: no transport outlives it (it would hold a place in the budget).
      transport.close();
      if (peer.transports().length === 0 && !peer.producer) peer.close();
      throw error;
    }
  }

  async createTransport(request: CreateTransportRequest): Promise<TransportInfo> {
    const { streamId, peerId, direction } = parseInput(createTransportRequestSchema, request);
    const stream = this.#stream(streamId);
    const transport = await this.#createTransport(stream, this.#peer(stream, peerId), direction);
    return transport.info();
  }

  async #createTransport(
    stream: LiveStream,
    peer: Peer,
    direction: TransportDirection,
  ): Promise<PeerTransport> {
    const streamId = stream.id;
    const peerId = peer.id;
    // A listener's slot is taken before any await, so concurrent joins cannot all pass the cap; a
    // peer replacing its recv transport frees its old slot as it gets the new one.
    let slot = false;
    try {
      slot = direction === 'recv' && !peer.transport('recv') ? this.#takeListenerSlot(stream, peer) : false;
    } catch (error) {
      if (peer.transports().length === 0 && !peer.producer) peer.close();
      throw error;
    }
    let transport: PeerTransport;
    try {
      transport = await stream.createTransport(peer, direction, this.#transportOptions);
    } catch (error) {
      if (slot) this.#listenerSlots--;
      if (error instanceof VezaError && error.details.reason === MEDIA_FAILURE.atCapacity)
        this.#metrics.listenerRefused('stream_budget');
      // A peer that never got a transport would otherwise linger until its stream ends.
      if (peer.transports().length === 0 && !peer.producer) peer.close();
      throw error;
    }
    if (direction === 'recv') {
      // A replaced recv transport gave its slot back on close; the new one holds it from here.
      if (!slot) this.#listenerSlots++;
      transport.once('close', () => this.#listenerSlots--);
      this.#idleSince.delete(streamId);
    }
    this.#transports.set(transport.id, transport);
    transport.on('dtlsstatechange', (state) =>
      this.#emit('transportDtlsState', { streamId, peerId, transportId: transport.id, state }),
    );
    transport.once('close', () => {
      this.#transports.delete(transport.id);
      this.#bytes.delete(transport.id);
    });
    return transport;
  }

  /** Takes a listener slot on the node, or refuses the listener (draining, or the node is full). */
  #takeListenerSlot(stream: LiveStream, peer: Peer): true {
    if (this.#draining) {
      this.#metrics.listenerRefused('draining');
      this.#log.warn({ streamId: stream.id, peerId: peer.id }, 'node draining: listener refused');
      throw new VezaError('unavailable', `media node ${this.nodeId} is draining and takes no new listeners`, {
        reason: MEDIA_FAILURE.draining,
      });
    }
    if (this.#listenerSlots >= this.#maxListeners) {
      this.#metrics.listenerRefused('node_max');
      this.#log.warn(
        { streamId: stream.id, listeners: this.#listenerSlots, maxListeners: this.#maxListeners },
        'node at capacity: listener refused',
      );
      throw new VezaError(
        'resource_exhausted',
        `stream ${stream.id} is at capacity on media node ${this.nodeId} (it holds its ${this.#maxListeners} listeners, MEDIA_NODE_MAX_LISTENERS); try again later`,
        { reason: MEDIA_FAILURE.atCapacity },
      );
    }
    this.#listenerSlots++;
    return true;
  }

  async pullStream(request: PullStreamRequest): Promise<PullStreamResult> {
    const input = parseInput(pullStreamRequestSchema, request);
    const peersOf = this.#peersOf;
    if (!peersOf)
      throw new FailedPreconditionError(`media node ${this.nodeId} cannot reach other media nodes`);
    if (input.sourceNodeId === this.nodeId)
      throw new InvalidArgumentError('a node cannot pull a stream from itself', 'sourceNodeId');
    if (this.#draining)
      throw new VezaError('unavailable', `media node ${this.nodeId} is draining`, {
        reason: MEDIA_FAILURE.draining,
      });
    const stream = await this.#open(input.streamId);
    const own = stream.producer;
    if (own && !own.closed && stream.upstream === undefined)
      return { producerId: own.id, upstream: this.nodeId };
    const relay = this.#relays.get(stream.id);
    const alive = relay && !relay.producer.closed && !relay.transport.closed;
    if (
      alive &&
      relay.source === input.sourceNodeId &&
      (!input.producerId || input.producerId === relay.producer.id)
    )
      return { producerId: relay.producer.id, upstream: relay.source };
    // Concurrent pulls of one stream share one pipe.
    const pending = this.#pulling.get(stream.id);
    if (pending) return pending;
    // A re-attachment that another control plane already made: the node no longer pulls from the
    // dead parent. Keep the pipe it has rather than pull a second time from another carrier.
    if (input.replacing !== undefined && alive && relay.source !== input.replacing)
      return { producerId: relay.producer.id, upstream: relay.source };
    const pulling = this.#pull(stream, input.sourceNodeId, peersOf).finally(() =>
      this.#pulling.delete(stream.id),
    );
    this.#pulling.set(stream.id, pulling);
    return pulling;
  }

  async #pull(stream: LiveStream, source: string, peersOf: MediaNodePeers): Promise<PullStreamResult> {
    const streamId = stream.id;
    // The previous pipe goes first: the new producer takes the same id on this router.
    const previous = this.#relays.get(streamId);
    const orphaned = previous !== undefined && stream.placedListeners > 0;
    if (previous) this.#releaseRelay(streamId, previous);
    const router = await stream.originRouter();
    const local = await router
      .createPipeTransport({ listenIp: this.#listenIp, enableRtx: true, appData: { streamId, source } })
      .catch((error: unknown) => {
        throw fromMediasoupError(error, { what: 'could not open a pipe for the stream' });
      });
    let remotePipeId: string | undefined;
    try {
      const remote = await peersOf(source).pipeOut({
        streamId,
        toNodeId: this.nodeId,
        ip: local.tuple.localIp,
        port: local.tuple.localPort,
      });
      remotePipeId = remote.pipeId;
      await local.connect({ ip: remote.ip, port: remote.port });
      const producer = await local.produce({
        id: remote.producerId,
        kind: 'audio',
        rtpParameters: asRtpParameters(remote.rtpParameters),
        paused: remote.producerPaused,
        appData: { streamId, relayFrom: source },
      });
      const relay: RelayIn = { source, transport: local, producer, remotePipeId: remote.pipeId };
      this.#relays.set(streamId, relay);
      local.observer.once('close', () => {
        if (this.#relays.get(streamId) === relay) this.#relays.delete(streamId);
      });
      await stream.adoptRelay(producer, source);
      this.#log.info({ streamId, source, producerId: producer.id }, 'stream pulled from another media node');
      if (orphaned) this.#emit('relayReplaced', { streamId, producerId: producer.id, upstream: source });
      return { producerId: producer.id, upstream: source };
    } catch (error) {
      local.close();
      if (remotePipeId)
        void peersOf(source)
          .closePipe(remotePipeId)
          .catch(() => undefined);
      if (error instanceof VezaError) throw error;
      throw fromMediasoupError(error, {
        what: `could not pull stream ${streamId} from media node ${source}`,
      });
    }
  }

  async pipeOut(request: PipeOutRequest): Promise<PipeOutResult> {
    const input = parseInput(pipeOutRequestSchema, request);
    // A new origin (the stream moved here) may be asked before its broadcaster is back: it opens
    // the stream, and remembers the node downstream so that node pulls once the audio comes.
    const stream = await this.#open(input.streamId);
    const producer = stream.producer;
    if (!producer || producer.closed) {
      this.#downstreamOf(stream.id).add(input.toNodeId);
      throw noAudioError(stream.id);
    }
    const router = await stream.originRouter();
    const transport = await router
      .createPipeTransport({
        listenIp: this.#listenIp,
        enableRtx: true,
        appData: { streamId: stream.id, to: input.toNodeId },
      })
      .catch((error: unknown) => {
        throw fromMediasoupError(error, { what: 'could not open a pipe for the stream' });
      });
    try {
      await transport.connect({ ip: input.ip, port: input.port });
      const consumer = await transport.consume({ producerId: producer.id });
      // The producer's end (a broadcaster that left) ends its pipes; the destinations pull the next one.
      consumer.observer.once('close', () => transport.close());
      this.#pipesOut.set(transport.id, { streamId: stream.id, toNodeId: input.toNodeId, transport });
      transport.observer.once('close', () => this.#pipesOut.delete(transport.id));
      this.#downstreamOf(stream.id).add(input.toNodeId);
      this.#idleSince.delete(stream.id);
      return {
        pipeId: transport.id,
        ip: transport.tuple.localIp,
        port: transport.tuple.localPort,
        producerId: producer.id,
        rtpParameters: consumer.rtpParameters,
        producerPaused: consumer.producerPaused,
      };
    } catch (error) {
      transport.close();
      throw fromMediasoupError(error, {
        what: `could not pipe stream ${stream.id} to media node ${input.toNodeId}`,
      });
    }
  }

  #downstreamOf(streamId: string): Set<string> {
    let downstream = this.#downstream.get(streamId);
    if (!downstream) {
      downstream = new Set();
      this.#downstream.set(streamId, downstream);
    }
    return downstream;
  }

  async closePipe(pipeId: string): Promise<void> {
    const pipe = this.#pipesOut.get(parseInput(objectIdSchema, pipeId, 'pipeId'));
    if (!pipe) return;
    pipe.transport.close();
    // A node that already pulls again (a new producer) keeps its place among the downstream ones.
    const again = [...this.#pipesOut.values()].some(
      (other) => other.streamId === pipe.streamId && other.toNodeId === pipe.toNodeId,
    );
    if (!again) this.#downstream.get(pipe.streamId)?.delete(pipe.toNodeId);
  }

  drain(): void {
    this.#draining = true;
  }

  placementState(): MediaNodePlacementState {
    const streams = [...this.#streams.values()].map((stream) => ({
      streamId: stream.id,
      listeners: stream.placedListeners,
      upstream: stream.upstream ?? null,
      downstream: [
        ...new Set(
          [...this.#pipesOut.values()]
            .filter((pipe) => pipe.streamId === stream.id)
            .map((pipe) => pipe.toNodeId),
        ),
      ],
    }));
    return {
      listeners: this.#listenerSlots,
      maxListeners: this.#maxListeners,
      zone: this.#config.MEDIA_NODE_ZONE ?? '',
      draining: this.#draining,
      streams,
    };
  }

  #releaseRelay(streamId: string, relay: RelayIn): void {
    if (this.#relays.get(streamId) === relay) this.#relays.delete(streamId);
    relay.transport.close();
    this.#peersOf?.(relay.source)
      .closePipe(relay.remotePipeId)
      .catch((error: unknown) =>
        this.#log.debug(
          { err: error, streamId, source: relay.source },
          'the source did not confirm closing its pipe',
        ),
      );
  }

  /** A relayed stream nobody listens to here and no node pulls from here is let go after the grace period. */
  #releaseIdleRelays(): void {
    const now = Date.now();
    for (const [streamId, relay] of [...this.#relays]) {
      const stream = this.#streams.get(streamId);
      const used =
        (stream?.placedListeners ?? 0) > 0 ||
        [...this.#pipesOut.values()].some((pipe) => pipe.streamId === streamId);
      if (used) {
        this.#idleSince.delete(streamId);
        continue;
      }
      const since = this.#idleSince.get(streamId);
      if (since === undefined) {
        this.#idleSince.set(streamId, now);
        continue;
      }
      if (now - since < this.#relayGraceMs) continue;
      this.#idleSince.delete(streamId);
      this.#log.info({ streamId, source: relay.source }, 'relay idle past its grace period: pipe released');
      this.#releaseRelay(streamId, relay);
      if (stream) this.#endStream(stream, 'relay-released');
    }
  }

  async connectTransport(transportId: string, dtlsParameters: ms.DtlsParameters): Promise<void> {
    const transport = this.#transport(parseInput(objectIdSchema, transportId, 'transportId'));
    const dtls = asDtlsParameters(parseInput(dtlsParametersSchema, dtlsParameters, 'dtlsParameters'));
    await transport.connect(dtls);
  }

  async restartIce(transportId: string): Promise<{ iceParameters: ms.IceParameters }> {
    const transport = this.#transport(parseInput(objectIdSchema, transportId, 'transportId'));
    return { iceParameters: await transport.restartIce() };
  }

  async produce(request: ProduceRequest): Promise<ProduceResult> {
    const input = parseInput(produceRequestSchema, request);
    const transport = this.#ownedTransport(input.transportId, input.peerId);
    const { stream, peer } = this.#streamAndPeerOf(transport);
    const producer = await stream.produce(peer, transport, asRtpParameters(input.rtpParameters));
    return { producerId: producer.id };
  }

  async pauseProducer(producerId: string): Promise<void> {
    const producer = this.#producer(parseInput(objectIdSchema, producerId, 'producerId'));
    await producer.pause().catch((error: unknown) => {
      throw fromMediasoupError(error, { what: `pausing producer ${producerId} failed` });
    });
  }

  async resumeProducer(producerId: string): Promise<void> {
    const producer = this.#producer(parseInput(objectIdSchema, producerId, 'producerId'));
    await producer.resume().catch((error: unknown) => {
      throw fromMediasoupError(error, { what: `resuming producer ${producerId} failed` });
    });
  }

  async consume(request: ConsumeRequest): Promise<ConsumeResult> {
    const input = parseInput(consumeRequestSchema, request);
    const transport = this.#ownedTransport(input.transportId, input.peerId);
    const { stream, peer } = this.#streamAndPeerOf(transport);
    return this.#consume(stream, peer, transport, asRtpCapabilities(input.rtpCapabilities));
  }

  async #consume(
    stream: LiveStream,
    peer: Peer,
    transport: PeerTransport,
    rtpCapabilities: ms.RtpCapabilities,
  ): Promise<ConsumeResult> {
    const consumer = await stream.consume(peer, transport, rtpCapabilities);
    this.#consumers.set(consumer.id, consumer);
    consumer.observer.once('close', () => {
      this.#consumers.delete(consumer.id);
      this.#packets.delete(consumer.id);
    });
    return {
      consumerId: consumer.id,
      producerId: consumer.producerId,
      kind: 'audio',
      rtpParameters: consumer.rtpParameters,
      producerPaused: consumer.producerPaused,
    };
  }

  async resumeConsumer(consumerId: string): Promise<void> {
    const consumer = this.#consumer(parseInput(objectIdSchema, consumerId, 'consumerId'));
    await consumer.resume().catch((error: unknown) => {
      throw fromMediasoupError(error, { what: `resuming consumer ${consumerId} failed` });
    });
  }

  async pauseConsumer(consumerId: string): Promise<void> {
    const consumer = this.#consumer(parseInput(objectIdSchema, consumerId, 'consumerId'));
    await consumer.pause().catch((error: unknown) => {
      throw fromMediasoupError(error, { what: `pausing consumer ${consumerId} failed` });
    });
  }

  async closePeer(peerId: string): Promise<void> {
    this.#peers.get(parseInput(callerIdSchema, peerId, 'peerId'))?.close('peer-left');
  }

  async closePeersOf(prefix: string): Promise<number> {
    if (prefix === '') throw new InvalidArgumentError('closing peers needs a non-empty id prefix', 'prefix');
    let closed = 0;
    for (const [id, peer] of [...this.#peers]) {
      if (!id.startsWith(prefix)) continue;
      peer.close('edge-lost');
      closed += 1;
    }
    return closed;
  }

  async getStats(peerId: string): Promise<PeerStats> {
    const id = parseInput(callerIdSchema, peerId, 'peerId');
    const peer = this.#peers.get(id);
    if (!peer) throw new NotFoundError(`peer ${id} not found`);
    try {
      const [transports, quality] = await Promise.all([
        Promise.all(peer.transports().map((transport) => transport.stats())),
        peerQuality(id, peer),
      ]);
      return { ...quality, transports };
    } catch (error) {
      // An object closed while its stats were on the way (a worker died, the peer left).
      throw new UnavailableError(`stats of peer ${id} are not available right now`, { cause: error });
    }
  }

  async qualityStats(peerIds: readonly string[]): Promise<PeerQuality[]> {
    const ids = parseInput(qualityStatsPeersSchema, peerIds, 'peerIds');
    const answers = await Promise.all(
      ids.map((id) => {
        const peer = this.#peers.get(id);
        // Closed while its stats were on the way: this sample skips it, the next one asks again.
        return peer ? peerQuality(id, peer).catch(() => null) : null;
      }),
    );
    return answers.filter((answer): answer is PeerQuality => answer !== null);
  }

  async listenerCount(streamId: string): Promise<number> {
    return this.#stream(parseInput(callerIdSchema, streamId, 'streamId')).activeListeners;
  }

  async getStreamInfo(streamId: string): Promise<StreamInfo> {
    return this.#stream(parseInput(callerIdSchema, streamId, 'streamId')).info();
  }

  async getWorkers(): Promise<WorkerInfo[]> {
    const cpu = await this.#pool.sampleCpu();
    return this.#pool.live().map((worker) => ({
      workerIndex: worker.index,
      pid: worker.pid,
      ...worker.counts,
      load: worker.load,
      cpuSeconds: cpu.get(worker.index) ?? null,
    }));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sampler);
    clearInterval(this.#relaySweep);
    for (const [streamId, relay] of [...this.#relays]) this.#releaseRelay(streamId, relay);
    for (const stream of [...this.#streams.values()]) this.#endStream(stream, 'node-closed');
    // The recorders' last segments are uploaded before the workers go.
    await Promise.allSettled([
      ...[...this.#recorders.values()].map((recorder) => recorder.close()),
      this.#spare?.stop(),
    ]);
    this.#spare = undefined;
    this.#recordingMetrics.clear();
    this.#pool.close();
    this.#events.removeAllListeners();
    this.#log.info('media node closed');
  }

  /** The pool's recovery hook: rebuilds every stream's router that lived on the replaced worker. */
  async recoverWorker(workerIndex: number): Promise<string[]> {
    const streams = [...this.#streams.values()];
    // Every stream's recover() checks synchronously whether it lost a router there, before any await.
    const results = await Promise.allSettled(streams.map((stream) => stream.recover(workerIndex)));
    const affected: string[] = [];
    results.forEach((result, i) => {
      const stream = streams[i];
      if (!stream) return;
      if (result.status === 'rejected') {
        this.#log.error(
          { streamId: stream.id, workerIndex, err: result.reason },
          'could not rebuild the stream',
        );
        affected.push(stream.id);
      } else if (result.value) {
        affected.push(stream.id);
      }
    });
    return affected;
  }

  #emit<K extends MediaNodeEventName>(event: K, payload: MediaNodeEvents[K]): void {
    try {
      (this.#events as EventEmitter).emit(event, payload);
    } catch (error) {
      this.#log.error({ err: error, event }, 'a media node event listener threw');
    }
  }

  async #open(streamId: string): Promise<LiveStream> {
    if (this.#closed) throw new UnavailableError('the media node is closed');
    const existing = this.#streams.get(streamId);
    if (existing) return existing;
    const pending = this.#opening.get(streamId);
    if (pending) return pending;
    const opening = LiveStream.open({
      id: streamId,
      pool: this.#pool,
      consumerBudget: this.#config.MEDIA_CONSUMER_BUDGET,
      audioLevels: this.#audioLevels,
      recoveryWaitMs: this.#recoveryWaitMs,
      log: this.#log.child({ streamId }),
    });
    this.#opening.set(streamId, opening);
    try {
      const stream = await opening;
      if (this.#closed) {
        stream.close();
        throw new UnavailableError('the media node is closed');
      }
      this.#adopt(stream);
      return stream;
    } finally {
      this.#opening.delete(streamId);
    }
  }

  #adopt(stream: LiveStream): void {
    const streamId = stream.id;
    this.#streams.set(streamId, stream);
    this.#ended.delete(`stream:${streamId}`);
    stream.on('produceropen', ({ producerId, peerId }) => {
      const producer = stream.producer;
      if (producer?.id === producerId) {
        this.#producers.set(producerId, { producer, streamId });
        // The broadcaster's node records; a relay carries a copy and records nothing.
        if (!peerId.startsWith(RELAY_PEER_PREFIX)) this.#record(stream, producer);
      }
      this.#repullDownstream(streamId, producerId);
      // The broadcaster produces here now (the stream moved to this node): the pulled copy goes.
      const relay = this.#relays.get(streamId);
      if (relay && !peerId.startsWith(RELAY_PEER_PREFIX)) this.#releaseRelay(streamId, relay);
      // Relayed audio is announced too: a listener that joined this node while it waited for its
      // upstream (a new origin whose broadcaster was reconnecting) consumes when it arrives here.
      // Its close is not: the broadcaster's own close, from the origin, is the one that counts.
      this.#emit('producerOpened', { streamId, peerId, producerId });
    });
    stream.on('producerclose', ({ producerId, peerId, reason }) => {
      this.#producers.delete(producerId);
      void this.#recorders.get(streamId)?.detach(producerId);
      if (peerId.startsWith(RELAY_PEER_PREFIX)) return;
      this.#emit('producerClosed', { streamId, peerId, producerId, reason });
    });
    stream.on('producerpause', ({ producerId, paused }) =>
      this.#emit('producerPaused', { streamId, producerId, paused }),
    );
    stream.on('listenercount', (count) => this.#emit('listenerCount', { streamId, count }));
    stream.on('audiolevel', (level) => this.#emit('audioLevel', { streamId, ...level }));
    const origin = stream.info().routers.find((router) => router.role === 'origin');
    this.#log.info({ streamId, workerIndex: origin?.workerIndex }, 'stream opened');
    this.#emit('streamOpened', { streamId, workerIndex: origin?.workerIndex ?? -1 });
  }

  /** A new producer here: the nodes this one fed pull it again (their pipes ended with the old one). */
  #repullDownstream(streamId: string, producerId: string): void {
    const peersOf = this.#peersOf;
    const downstream = this.#downstream.get(streamId);
    if (!peersOf || !downstream) return;
    for (const nodeId of downstream) {
      peersOf(nodeId)
        .pullStream({ streamId, sourceNodeId: this.nodeId, producerId })
        .catch((error: unknown) => {
          downstream.delete(nodeId);
          this.#log.warn({ err: error, streamId, nodeId }, 'a downstream node did not pull the new producer');
        });
    }
  }

  #endStream(stream: LiveStream, reason: MediaNodeEvents['streamEnded']['reason']): void {
    const streamId = stream.id;
    this.#ended.add(`stream:${streamId}`, streamId);
    for (const transport of this.#transports.values()) {
      if (transport.streamId === streamId) this.#ended.add(`transport:${transport.id}`, streamId);
    }
    stream.close();
    this.#streams.delete(streamId);
    this.#recorded.delete(streamId);
    const recorder = this.#recorders.get(streamId);
    if (recorder) {
      this.#recorders.delete(streamId);
      recorder
        .close()
        .catch((error: unknown) => this.#log.error({ err: error, streamId }, 'could not stop the recorder'));
    }
    this.#downstream.delete(streamId);
    this.#idleSince.delete(streamId);
    this.#log.info({ streamId, reason }, 'stream ended');
    this.#emit('streamEnded', { streamId, reason });
  }

  async recorderReady(): Promise<void> {
    await this.#spare?.ready;
  }

  recorderPid(streamId: string): number | undefined {
    return this.#recorders.get(streamId)?.session?.pid;
  }

  /**
   * The stream's recorder when its prefix says it is recorded (the manifest, asked once per
   * stream opened here); undefined otherwise.
   */
  async #recorderOf(stream: LiveStream): Promise<StreamRecorder | undefined> {
    const blobs = this.#blobs;
    if (!blobs) return undefined;
    const streamId = stream.id;
    let recorded = this.#recorded.get(streamId);
    if (!recorded) {
      recorded = blobs.stat(recordingManifestKey(streamId)).then(
        (manifest) => manifest !== null,
        (error: unknown) => {
          // Unknown is not "off": the next producer asks again.
          this.#recorded.delete(streamId);
          this.#log.error({ err: error, streamId }, 'could not read the recording manifest; not recording');
          return false;
        },
      );
      this.#recorded.set(streamId, recorded);
    }
    if (!(await recorded) || stream.closed || this.#closed) return undefined;
    let recorder = this.#recorders.get(streamId);
    if (!recorder) {
      recorder = new StreamRecorder({
        streamId,
        nodeId: this.nodeId,
        takeSpare: () => this.#takeSpare(blobs),
        log: this.#log.child({ streamId, component: 'recorder' }),
        metrics: this.#recordingMetrics,
      });
      this.#recorders.set(streamId, recorder);
    }
    return recorder;
  }

  /**
   * The node's spare recorder session (ffmpeg spawned and bound, waiting for RTP), handed to the
   * next producer to record; another is made at once. A spare that died meanwhile is replaced.
   */
  #takeSpare(blobs: BlobStorage): RecorderSession {
    let spare = this.#spare;
    if (!spare || spare.finished || spare.taken) spare = this.#newSpare(blobs);
    this.#spare = this.#closed ? undefined : this.#newSpare(blobs);
    return spare;
  }

  #newSpare(blobs: BlobStorage): RecorderSession {
    return RecorderSession.prepare({
      blobs,
      segmentSeconds: this.#config.RECORDING_SEGMENT_S,
      log: this.#log.child({ component: 'recorder' }),
      metrics: this.#recordingMetrics,
    });
  }

  /** Starts recording the broadcaster's producer when the stream is recorded. */
  #record(stream: LiveStream, producer: ms.Producer): void {
    this.#recorderOf(stream)
      .then(async (recorder) => {
        if (recorder && !producer.closed) await recorder.attach(await stream.originRouter(), producer);
      })
      .catch((error: unknown) =>
        this.#log.error({ err: error, streamId: stream.id }, 'could not start recording'),
      );
  }

  #stream(streamId: string): LiveStream {
    const stream = this.#streams.get(streamId);
    if (stream) return stream;
    if (this.#ended.get(`stream:${streamId}`) !== undefined) throw streamEndedError(streamId);
    throw new NotFoundError(`stream ${streamId} is not open on this media node`);
  }

  #peer(stream: LiveStream, peerId: string): Peer {
    const existing = this.#peers.get(peerId);
    if (existing) {
      if (existing.streamId !== stream.id) {
        throw new FailedPreconditionError(
          `peer ${peerId} is already in stream ${existing.streamId}: close it (closePeer) before joining another`,
        );
      }
      return existing;
    }
    const peer = stream.peer(peerId);
    this.#peers.set(peerId, peer);
    peer.once('close', () => {
      if (this.#peers.get(peerId) === peer) this.#peers.delete(peerId);
    });
    return peer;
  }

  #transport(transportId: string): PeerTransport {
    const transport = this.#transports.get(transportId);
    if (transport) return transport;
    const endedStream = this.#ended.get(`transport:${transportId}`);
    if (endedStream !== undefined) throw streamEndedError(endedStream);
    throw new NotFoundError(`transport ${transportId} not found (closed, or never created)`);
  }

  #ownedTransport(transportId: string, peerId: string): PeerTransport {
    const transport = this.#transport(transportId);
    if (transport.peerId !== peerId) {
      throw new PermissionDeniedError(`transport ${transportId} belongs to another peer`);
    }
    return transport;
  }

  #streamAndPeerOf(transport: PeerTransport): { stream: LiveStream; peer: Peer } {
    const stream = this.#stream(transport.streamId);
    const peer = this.#peers.get(transport.peerId);
    if (!peer || peer.streamId !== stream.id) {
      throw new FailedPreconditionError(`peer ${transport.peerId} has left stream ${stream.id}`);
    }
    return { stream, peer };
  }

  #producer(producerId: string): ms.Producer {
    const entry = this.#producers.get(producerId);
    if (!entry) throw new NotFoundError(`producer ${producerId} not found (closed, or never created)`);
    return entry.producer;
  }

  #consumer(consumerId: string): ms.Consumer {
    const consumer = this.#consumers.get(consumerId);
    if (!consumer) throw new NotFoundError(`consumer ${consumerId} not found (closed, or never created)`);
    return consumer;
  }

  /**
   * Worker CPU and transport bytes into the metrics; skipped while a previous sample is still
   * running. Bytes come from a bounded, round-robin slice of the transports per tick (each asked
   * one after the other), not from all of them at once: a getStats of every transport every tick
   * was a burst of one worker request per listener (1,000 at 1,000 listeners), queued in the
   * workers' channel in front of joins and growing with the audience.
   */
  async #sample(): Promise<void> {
    if (this.#sampling || this.#closed) return;
    this.#sampling = true;
    try {
      await this.#pool.sampleCpu();
      let received = 0;
      let sent = 0;
      for (const transport of this.#nextTransportsToSample()) {
        if (transport.closed || this.#closed) continue;
        try {
          const [stat] = await transport.transport.getStats();
          if (!stat) continue;
          const last = this.#bytes.get(transport.id) ?? { received: 0, sent: 0 };
          received += Math.max(0, stat.bytesReceived - last.received);
          sent += Math.max(0, stat.bytesSent - last.sent);
          if (!transport.closed)
            this.#bytes.set(transport.id, { received: stat.bytesReceived, sent: stat.bytesSent });
        } catch {
          // Closed meanwhile: its last bytes are lost to the counter, which is fine for a sampled metric.
        }
      }
      this.#metrics.addBytes(received, sent);
      await this.#sampleListeners();
    } finally {
      this.#sampling = false;
    }
  }

  /**
   * Loss, RTT and packets of a bounded, round-robin slice of the listeners' consumers, as with the
   * transports' bytes. Pipe consumers (between this node's routers) have no receiver reports.
   */
  async #sampleListeners(): Promise<void> {
    const listeners = [...this.#consumers.values()].filter((consumer) => consumer.type !== 'pipe');
    let start = 0;
    if (listeners.length > STATS_SLICE) {
      start = Math.max(0, listeners.findIndex((consumer) => consumer.id === this.#lastSampledConsumer) + 1);
    }
    const slice = listeners.slice(start, start + STATS_SLICE);
    if (slice.length < STATS_SLICE && listeners.length > slice.length)
      slice.push(...listeners.slice(0, Math.min(start, STATS_SLICE - slice.length)));
    this.#lastSampledConsumer = slice.at(-1)?.id;
    for (const consumer of slice) {
      if (consumer.closed || this.#closed) continue;
      try {
        const stats = await consumer.getStats();
        const outbound = stats.find((stat) => stat.type === 'outbound-rtp');
        if (!outbound) continue;
        const last = this.#packets.get(consumer.id) ?? 0;
        if (!consumer.closed) this.#packets.set(consumer.id, outbound.packetCount);
        // Without a receiver report (no RTT yet) nothing is known about the listener's leg.
        const report =
          outbound.roundTripTime === undefined
            ? undefined
            : { loss: outbound.fractionLost / 256, rttMs: outbound.roundTripTime };
        this.#metrics.observeListener(report, Math.max(0, outbound.packetCount - last));
      } catch {
        // Closed meanwhile: skipped this tick, as with the transports' bytes.
      }
    }
  }

  /** The next STATS_SLICE transports after the last one sampled, in the map's (creation) order. */
  #nextTransportsToSample(): PeerTransport[] {
    const all = [...this.#transports.values()];
    if (all.length <= STATS_SLICE) return all;
    const start = Math.max(0, all.findIndex((transport) => transport.id === this.#lastSampled) + 1);
    const slice = [...all.slice(start, start + STATS_SLICE)];
    if (slice.length < STATS_SLICE) slice.push(...all.slice(0, STATS_SLICE - slice.length));
    this.#lastSampled = slice.at(-1)?.id;
    return slice;
  }
}
