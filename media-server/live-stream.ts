/**
 * One live stream on this media node: an origin Router (where the broadcaster's single audio Producer
 * lives, watched by an AudioLevelObserver) plus fan-out Routers on other workers, fed by pipeToRouter
 * once the origin holds MEDIA_CONSUMER_BUDGET listeners. At most one router per worker.
 *
 * Placement of a listener: the origin while it is under budget; else the least-loaded fan-out router
 * under budget; else a new fan-out router on the least-loaded worker that has none for this stream;
 * else (every worker holds a full router) the listener is refused with resource_exhausted
 * (`MEDIA_FAILURE.atCapacity`), never placed on a router over its budget.
 *
 * Worker death: the dead worker's routers close with it. A lost origin takes the producer with it, and
 * calls needing the origin wait (bounded) until `recover()` rebuilds it on the replacement worker; the
 * broadcaster then produces again and the new producer is piped to the surviving fan-out routers.
 *
 * Close cascade: closing the stream closes its peers (their transports, producer and consumers), then
 * its routers (the level observer and pipe transports with them).
 */
import { EventEmitter } from 'node:events';
import type { types as ms } from 'mediasoup';
import {
  FailedPreconditionError,
  InvalidArgumentError,
  MEDIA_FAILURE,
  type ProducerCloseReason,
  type StreamInfo,
  type TransportDirection,
  UnavailableError,
  VezaError,
} from '../common/contracts/index.js';
import type { Logger } from '../common/index.js';
import { MEDIA_CODECS } from './codecs.js';
import { fromMediasoupError } from './errors.js';
import { markProducerClosing, Peer, producerCloseReason } from './peer.js';
import { PeerTransport } from './peer-transport.js';
import type { PooledWorker } from './pooled-worker.js';
import { StreamRouter, type StreamRouterRole } from './stream-router.js';
import type { WorkerPool } from './worker-pool.js';

export interface AudioLevelSettings {
  /** How often the observer reports (mediasoup's minimum is 250 ms). */
  intervalMs: number;
  /** Below this (dBov, -127..0) the producer counts as silent: the meter reads its floor. */
  thresholdDbov: number;
  /** At or above this the broadcaster is shown as speaking. */
  speakingDbov: number;
}

export interface LiveStreamOptions {
  id: string;
  pool: WorkerPool;
  consumerBudget: number;
  audioLevels: AudioLevelSettings;
  /** How long calls wait for a lost origin router to be rebuilt before giving up. */
  recoveryWaitMs: number;
  log: Logger;
}

export type { StreamInfo, StreamRouterInfo } from '../common/contracts/index.js';

/** The peer id a relayed producer is held under: `relay:<sourceNodeId>` (no edge makes such an id). */
export const RELAY_PEER_PREFIX = 'relay:';

export interface LiveStreamEvents {
  produceropen: [{ producerId: string; peerId: string }];
  producerclose: [{ producerId: string; peerId: string; reason: ProducerCloseReason }];
  producerpause: [{ producerId: string; paused: boolean }];
  audiolevel: [{ producerId: string; volumeDbov: number; speaking: boolean }];
  listenercount: [number];
  close: [];
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: Error) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Nobody may be waiting when it settles.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

function minBy<T>(items: T[], score: (item: T) => number): T | undefined {
  let best: T | undefined;
  let bestScore = Number.POSITIVE_INFINITY;
  for (const item of items) {
    const value = score(item);
    if (value < bestScore) {
      best = item;
      bestScore = value;
    }
  }
  return best;
}

/** The reason on the error lets the edge say "ended" to its client without asking again. */
export function streamEndedError(streamId: string): VezaError {
  return new FailedPreconditionError(`stream ${streamId} has ended`, MEDIA_FAILURE.streamEnded);
}

/** Nobody produces right now: the edge tells its listener to wait for the audio, not to give up. */
export function noAudioError(streamId: string): VezaError {
  return new FailedPreconditionError(
    `stream ${streamId} has no broadcaster audio right now`,
    MEDIA_FAILURE.noAudio,
  );
}

async function createStreamRouter(
  worker: PooledWorker,
  role: StreamRouterRole,
  streamId: string,
): Promise<StreamRouter> {
  try {
    const router = await worker.worker.createRouter({
      mediaCodecs: MEDIA_CODECS,
      appData: { streamId, role },
    });
    return new StreamRouter(router, role, worker);
  } catch (error) {
    throw new UnavailableError(`could not create a router for stream ${streamId} on worker ${worker.index}`, {
      cause: error,
    });
  }
}

export class LiveStream extends EventEmitter<LiveStreamEvents> {
  readonly id: string;
  readonly #options: LiveStreamOptions;
  readonly #log: Logger;
  #origin: StreamRouter;
  /** worker index -> this stream's router there (the origin included). */
  readonly #routers = new Map<number, StreamRouter>();
  readonly #peers = new Map<string, Peer>();
  #producer: { producer: ms.Producer; peerId: string } | undefined;
  /** Pending while the origin's worker is being replaced. */
  #originLost: Deferred | undefined;
  /** Placement decisions run one at a time, so concurrent joins see each other's reservations. */
  #placement: Promise<unknown> = Promise.resolve();
  #listenerCount = 0;
  #closed = false;

  private constructor(options: LiveStreamOptions, origin: StreamRouter) {
    super();
    this.id = options.id;
    this.#options = options;
    this.#log = options.log;
    this.#origin = origin;
    this.#adopt(origin);
  }

  static async open(options: LiveStreamOptions): Promise<LiveStream> {
    const worker = options.pool.leastLoaded();
    if (!worker) throw new UnavailableError('no media worker is available');
    const origin = await createStreamRouter(worker, 'origin', options.id);
    const stream = new LiveStream(options, origin);
    try {
      await stream.#observeLevels(origin);
    } catch (error) {
      stream.close();
      throw new UnavailableError(`could not start the audio level observer of stream ${options.id}`, {
        cause: error,
      });
    }
    return stream;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Every router of the stream has the same capabilities (same codecs), even one being rebuilt. */
  get rtpCapabilities(): ms.RtpCapabilities {
    return this.#origin.router.rtpCapabilities;
  }

  get activeListeners(): number {
    return this.#listenerCount;
  }

  get producer(): ms.Producer | undefined {
    return this.#producer?.producer;
  }

  /** The node the live producer is pulled from, or undefined when the broadcaster is here (or nobody produces). */
  get upstream(): string | undefined {
    const current = this.#producer;
    if (!current || current.producer.closed || !current.peerId.startsWith(RELAY_PEER_PREFIX))
      return undefined;
    return current.peerId.slice(RELAY_PEER_PREFIX.length);
  }

  /** Recv transports placed on the stream's routers (what the node's listener cap counts). */
  get placedListeners(): number {
    let placed = 0;
    for (const router of this.#routers.values()) if (!router.closed) placed += router.listeners;
    return placed;
  }

  info(): StreamInfo {
    return {
      streamId: this.id,
      producerId: this.#producer?.producer.id ?? null,
      broadcasterPeerId: this.#producer?.peerId ?? null,
      producerPaused: this.#producer?.producer.paused ?? false,
      listenerCount: this.#listenerCount,
      routers: [...this.#routers.values()]
        .filter((router) => !router.closed)
        .map((router) => ({
          routerId: router.router.id,
          workerIndex: router.workerIndex,
          role: router.role,
          listeners: router.listeners,
        })),
    };
  }

  /** The peer with this id in this stream, created on first use. */
  peer(peerId: string): Peer {
    if (this.#closed) throw streamEndedError(this.id);
    let peer = this.#peers.get(peerId);
    if (!peer) {
      const created = new Peer(peerId, this.id);
      this.#peers.set(peerId, created);
      created.on('listeningchange', (listening) =>
        this.#setListenerCount(this.#listenerCount + (listening ? 1 : -1)),
      );
      created.once('close', () => this.#peers.delete(peerId));
      peer = created;
    }
    return peer;
  }

  /** Creates the peer's transport: a send transport on the origin, a recv transport where placement says. */
  async createTransport(
    peer: Peer,
    direction: TransportDirection,
    options: Omit<ms.WebRtcTransportOptions, 'appData'>,
  ): Promise<PeerTransport> {
    // A peer has one transport per direction: free the old one first, so it does not count against the budget.
    const previous = peer.transport(direction);
    if (previous) {
      if (direction === 'send') markProducerClosing(peer.producer, 'transport-closed');
      previous.close();
    }
    const streamRouter = direction === 'send' ? await this.#originRouter() : await this.#placeListener();
    const release = () => {
      if (direction === 'recv') streamRouter.listeners--;
    };
    let transport: ms.WebRtcTransport;
    try {
      transport = await streamRouter.router.createWebRtcTransport({
        ...options,
        appData: { streamId: this.id, peerId: peer.id, direction },
      } as ms.WebRtcTransportOptions);
    } catch (error) {
      release();
      if (streamRouter.closed)
        throw new UnavailableError(`the router of stream ${this.id} is being replaced`);
      throw fromMediasoupError(error, { what: 'could not create a transport' });
    }
    const peerTransport = new PeerTransport({
      transport,
      direction,
      streamRouter,
      peerId: peer.id,
      streamId: this.id,
    });
    peerTransport.once('close', release);
    if (this.#closed || peer.closed) {
      peerTransport.close();
      throw this.#closed
        ? streamEndedError(this.id)
        : new FailedPreconditionError(`peer ${peer.id} has left`);
    }
    peer.addTransport(peerTransport);
    return peerTransport;
  }

  /** The broadcaster's audio: one producer per stream, on the origin router. */
  async produce(peer: Peer, transport: PeerTransport, rtpParameters: ms.RtpParameters): Promise<ms.Producer> {
    if (this.#closed) throw streamEndedError(this.id);
    if (transport.direction !== 'send') {
      throw new InvalidArgumentError(
        `transport ${transport.id} is a recv transport: produce needs a send transport`,
        'transportId',
      );
    }
    this.#assertNoOtherBroadcaster(peer);
    let producer: ms.Producer;
    try {
      producer = await transport.transport.produce({
        kind: 'audio',
        rtpParameters,
        appData: { streamId: this.id, peerId: peer.id },
      });
    } catch (error) {
      if (this.#closed) throw streamEndedError(this.id);
      throw fromMediasoupError(error, { what: 'bad rtpParameters', field: 'rtpParameters' });
    }
    try {
      this.#assertNoOtherBroadcaster(peer);
      if (this.#closed) throw streamEndedError(this.id);
    } catch (error) {
      producer.close();
      throw error;
    }
    peer.setProducer(producer);
    // The broadcaster came to a node that relayed the stream (it moved here): its own audio replaces the pulled one.
    const relayed = this.#producer;
    if (relayed && !relayed.producer.closed && relayed.peerId.startsWith(RELAY_PEER_PREFIX)) {
      markProducerClosing(relayed.producer, 'replaced');
      relayed.producer.close();
    }
    this.#setProducer(producer, peer.id, transport.streamRouter);
    return producer;
  }

  /**
   * The stream's audio arriving from another node over a PipeTransport (cascaded fan-out): it takes
   * the broadcaster's place on this node, so listeners and fan-out routers here consume it alike.
   */
  async adoptRelay(producer: ms.Producer, sourceNodeId: string): Promise<void> {
    const origin = await this.#originRouter();
    const current = this.#producer;
    if (current && !current.producer.closed && !current.peerId.startsWith(RELAY_PEER_PREFIX)) {
      producer.close();
      throw new FailedPreconditionError(
        `stream ${this.id} has its broadcaster on this node: nothing to pull`,
      );
    }
    if (current && !current.producer.closed) {
      markProducerClosing(current.producer, 'replaced');
      current.producer.close();
    }
    this.#setProducer(producer, `${RELAY_PEER_PREFIX}${sourceNodeId}`, origin);
  }

  /** The origin router: it holds the stream's producer, so pipes to other nodes and the recorder consume there. */
  async originRouter(): Promise<ms.Router> {
    return (await this.#originRouter()).router;
  }

  #setProducer(producer: ms.Producer, peerId: string, origin: StreamRouter): void {
    this.#producer = { producer, peerId };
    producer.observer.on('pause', () =>
      this.emit('producerpause', { producerId: producer.id, paused: true }),
    );
    producer.observer.on('resume', () =>
      this.emit('producerpause', { producerId: producer.id, paused: false }),
    );
    producer.observer.once('close', () => {
      if (this.#producer?.producer === producer) this.#producer = undefined;
      const reason = producerCloseReason(producer) ?? (origin.worker.died ? 'worker-died' : 'closed');
      this.emit('producerclose', { producerId: producer.id, peerId, reason });
    });
    const levels = origin.levels;
    if (levels) {
      levels.addProducer({ producerId: producer.id }).catch((error: unknown) => {
        if (!producer.closed)
          this.#log.warn({ err: error }, 'could not observe the audio level of the producer');
      });
    }
    for (const router of this.#routers.values()) {
      if (router.role === 'fanout' && !router.closed) this.#pipe(router, producer);
    }
    this.emit('produceropen', { producerId: producer.id, peerId });
  }

  /** A paused consumer of the broadcaster's audio on the listener's router. */
  async consume(
    peer: Peer,
    transport: PeerTransport,
    rtpCapabilities: ms.RtpCapabilities,
  ): Promise<ms.Consumer> {
    if (this.#closed) throw streamEndedError(this.id);
    if (transport.direction !== 'recv') {
      throw new InvalidArgumentError(
        `transport ${transport.id} is a send transport: consume needs a recv transport`,
        'transportId',
      );
    }
    const current = this.#producer;
    if (!current || current.producer.closed) {
      throw noAudioError(this.id);
    }
    const router = transport.streamRouter;
    const producerId = current.producer.id;
    if (router.role === 'fanout') {
      await router.pipeFrom(this.#origin, current.producer);
    }
    if (!router.router.canConsume({ producerId, rtpCapabilities })) {
      throw new InvalidArgumentError(
        'rtpCapabilities cannot receive this stream: they must include audio/opus at 48000 Hz with 2 channels',
        'rtpCapabilities',
      );
    }
    let consumer: ms.Consumer;
    try {
      consumer = await transport.transport.consume({
        producerId,
        rtpCapabilities,
        paused: true,
        appData: { streamId: this.id, peerId: peer.id },
      });
    } catch (error) {
      // What closed under the call decides what the caller is told: the stream, the audio, or its own transport.
      if (this.#closed) throw streamEndedError(this.id);
      if (current.producer.closed) throw noAudioError(this.id);
      if (transport.closed)
        throw new FailedPreconditionError(`transport ${transport.id} closed while consuming`);
      throw fromMediasoupError(error, { what: 'cannot consume', field: 'rtpCapabilities' });
    }
    if (this.#closed || peer.closed) {
      consumer.close();
      throw this.#closed
        ? streamEndedError(this.id)
        : new FailedPreconditionError(`peer ${peer.id} has left`);
    }
    peer.addConsumer(consumer);
    return consumer;
  }

  /**
   * After the worker at `workerIndex` died and was replaced: rebuilds this stream's router that lived
   * there on the replacement. Returns whether the stream had a router there.
   */
  async recover(workerIndex: number): Promise<boolean> {
    const lost = this.#routers.get(workerIndex);
    if (this.#closed || !lost?.closed) return false;
    const worker = this.#options.pool.worker(workerIndex);
    const rebuilt = await createStreamRouter(worker, lost.role, this.id);
    if (this.#closed) {
      rebuilt.close();
      return true;
    }
    if (lost === this.#origin) {
      try {
        await this.#observeLevels(rebuilt);
      } catch (error) {
        rebuilt.close();
        throw error;
      }
      this.#origin = rebuilt;
      this.#adopt(rebuilt);
      this.#originLost?.resolve();
      this.#originLost = undefined;
    } else {
      this.#adopt(rebuilt);
      const producer = this.#producer?.producer;
      if (producer && !producer.closed) this.#pipe(rebuilt, producer);
    }
    this.#log.info({ workerIndex, role: rebuilt.role }, 'stream router rebuilt on the replacement worker');
    return true;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    markProducerClosing(this.#producer?.producer, 'stream-ended');
    for (const peer of [...this.#peers.values()]) peer.close('stream-ended');
    for (const router of this.#routers.values()) router.close();
    this.#originLost?.reject(streamEndedError(this.id));
    this.emit('close');
    this.removeAllListeners();
  }

  #assertNoOtherBroadcaster(peer: Peer): void {
    const current = this.#producer;
    // A relayed producer is not a broadcaster here: the broadcaster's own audio takes its place.
    if (
      current &&
      current.peerId !== peer.id &&
      !current.producer.closed &&
      !current.peerId.startsWith(RELAY_PEER_PREFIX)
    ) {
      throw new FailedPreconditionError(`stream ${this.id} already has a broadcaster`);
    }
  }

  #setListenerCount(count: number): void {
    if (count === this.#listenerCount) return;
    this.#listenerCount = count;
    if (!this.#closed) this.emit('listenercount', count);
  }

  #adopt(router: StreamRouter): void {
    this.#routers.set(router.workerIndex, router);
    router.router.observer.once('close', () => {
      if (this.#closed || router !== this.#origin) return;
      // Only a dying worker closes a live stream's origin: wait for recover().
      this.#originLost ??= deferred();
      this.#log.warn({ workerIndex: router.workerIndex }, 'origin router lost with its worker');
    });
  }

  async #observeLevels(origin: StreamRouter): Promise<void> {
    const { intervalMs, thresholdDbov, speakingDbov } = this.#options.audioLevels;
    const levels = await origin.router.createAudioLevelObserver({
      maxEntries: 1,
      threshold: thresholdDbov,
      interval: intervalMs,
    });
    origin.levels = levels;
    levels.on('volumes', (volumes) => {
      for (const { producer, volume } of volumes) {
        this.emit('audiolevel', {
          producerId: producer.id,
          volumeDbov: volume,
          speaking: volume >= speakingDbov,
        });
      }
    });
    levels.on('silence', () => {
      const producer = this.#producer?.producer;
      if (producer) this.emit('audiolevel', { producerId: producer.id, volumeDbov: -127, speaking: false });
    });
  }

  /** A new fan-out router on `worker`; undefined (the caller overflows elsewhere) if the worker just died. */
  async #fanOutTo(worker: PooledWorker): Promise<StreamRouter | undefined> {
    let router: StreamRouter;
    try {
      router = await createStreamRouter(worker, 'fanout', this.id);
    } catch (error) {
      this.#log.warn({ err: error, workerIndex: worker.index }, 'could not fan out to the worker');
      return undefined;
    }
    if (this.#closed) {
      router.close();
      throw streamEndedError(this.id);
    }
    this.#adopt(router);
    const producer = this.#producer?.producer;
    if (producer && !producer.closed) this.#pipe(router, producer);
    this.#log.info({ workerIndex: worker.index }, 'stream fanned out to another worker');
    return router;
  }

  #pipe(router: StreamRouter, producer: ms.Producer): void {
    router.pipeFrom(this.#origin, producer).catch((error: unknown) => {
      if (!producer.closed && !router.closed) {
        this.#log.error({ err: error, workerIndex: router.workerIndex }, 'piping the producer failed');
      }
    });
  }

  async #originRouter(): Promise<StreamRouter> {
    const lost = this.#originLost;
    if (lost) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new UnavailableError(`stream ${this.id} is recovering from a media worker failure: retry`),
            ),
          this.#options.recoveryWaitMs,
        );
      });
      try {
        await Promise.race([lost.promise, timeout]);
      } finally {
        clearTimeout(timer);
      }
    }
    if (this.#closed) throw streamEndedError(this.id);
    return this.#origin;
  }

  #placeListener(): Promise<StreamRouter> {
    const placed = this.#placement.then(() => this.#place());
    this.#placement = placed.catch(() => undefined);
    return placed;
  }

  async #place(): Promise<StreamRouter> {
    const origin = await this.#originRouter();
    const budget = this.#options.consumerBudget;
    const live = [...this.#routers.values()].filter((router) => !router.closed);
    let target: StreamRouter | undefined = origin.listeners < budget ? origin : undefined;
    target ??= minBy(
      live.filter((router) => router.role === 'fanout' && router.listeners < budget),
      (router) => router.worker.load,
    );
    if (!target) {
      const worker = this.#options.pool.leastLoaded(
        (candidate) => this.#routers.get(candidate.index)?.closed !== false,
      );
      if (worker) target = await this.#fanOutTo(worker);
    }
    if (!target) {
      // Overflowing a full router would hand out a transport its worker cannot feed well (or at
      // all, when that router is being rebuilt): refuse clearly instead, the client retries later.
      const routers = live.length;
      this.#log.warn(
        { routers, budget, listeners: this.#listenerCount },
        'stream at capacity: listener refused',
      );
      throw new VezaError(
        'resource_exhausted',
        `stream ${this.id} is at capacity on this media node (${routers} router(s) of ${budget} listeners each are full); try again later`,
        { reason: MEDIA_FAILURE.atCapacity },
      );
    }
    target.listeners++;
    return target;
  }
}
