/**
 * The small media-node API the edge calls: directly in standalone mode, through NATS request/reply on
 * the node's subject in cluster mode. Hence every argument and result is plain JSON (no class
 * instances, no undefined that matters), every method is async, and events carry one JSON payload.
 */
import type { types as ms } from 'mediasoup';
import type { WorkerDiedEvent, WorkerReplacedEvent } from './worker-pool.js';

export type { StreamInfo, StreamRouterInfo } from './live-stream.js';
export type { ProducerCloseReason } from './peer.js';
export type { TransportDirection, TransportInfo } from './peer-transport.js';
export type {
  ConsumerStats,
  PeerStats,
  ProducerStats,
  RtpStreamStats,
  TransportStats,
  TupleStats,
} from './stats.js';
export type { WorkerDiedEvent, WorkerReplacedEvent } from './worker-pool.js';

import type { StreamInfo } from './live-stream.js';
import type { ProducerCloseReason } from './peer.js';
import type { TransportDirection, TransportInfo } from './peer-transport.js';
import type { PeerStats } from './stats.js';

export type RtpCapabilities = ms.RtpCapabilities;
export type RtpParameters = ms.RtpParameters;
export type DtlsParameters = ms.DtlsParameters;
export type IceParameters = ms.IceParameters;
export type IceCandidate = ms.IceCandidate;
export type DtlsState = ms.DtlsState;

export interface OpenStreamResult {
  streamId: string;
  workerIndex: number;
  rtpCapabilities: RtpCapabilities;
}

export interface CreateTransportRequest {
  streamId: string;
  peerId: string;
  direction: TransportDirection;
}

export interface ProduceRequest {
  transportId: string;
  peerId: string;
  kind: 'audio';
  rtpParameters: RtpParameters;
}

export interface ProduceResult {
  producerId: string;
}

export interface ConsumeRequest {
  transportId: string;
  peerId: string;
  rtpCapabilities: RtpCapabilities;
}

/** A consumer is created paused: the client resumes it (resumeConsumer) once its track is wired. */
export interface ConsumeResult {
  consumerId: string;
  producerId: string;
  kind: 'audio';
  rtpParameters: RtpParameters;
  producerPaused: boolean;
}

export interface WorkerInfo {
  workerIndex: number;
  pid: number;
  routers: number;
  transports: number;
  producers: number;
  consumers: number;
  /** consumers + transports: what placement compares. */
  load: number;
  /** User + system CPU seconds of the worker process; null if it could not be read. */
  cpuSeconds: number | null;
}

export interface MediaNodeEvents {
  streamOpened: { streamId: string; workerIndex: number };
  /** The stream was closed (closeStream or node shutdown): every transport of it is gone. */
  streamEnded: { streamId: string; reason: 'closed' | 'node-closed' };
  producerOpened: { streamId: string; peerId: string; producerId: string };
  producerClosed: { streamId: string; peerId: string; producerId: string; reason: ProducerCloseReason };
  producerPaused: { streamId: string; producerId: string; paused: boolean };
  listenerCount: { streamId: string; count: number };
  /** For the broadcaster's meter: volume in dBov (-127 silent .. 0 full scale), every interval while not silent. */
  audioLevel: { streamId: string; producerId: string; volumeDbov: number; speaking: boolean };
  transportDtlsState: { streamId: string; peerId: string; transportId: string; state: DtlsState };
  workerDied: WorkerDiedEvent;
  /** The dead worker's streams have been rebuilt: their clients should re-create transports, produce and consume. */
  workerReplaced: WorkerReplacedEvent;
}

export type MediaNodeEventName = keyof MediaNodeEvents;
export type MediaNodeListener<K extends MediaNodeEventName> = (event: MediaNodeEvents[K]) => void;

export interface MediaNode {
  readonly nodeId: string;

  /** Opens the stream's origin router (idempotent: an open stream is returned as is). */
  openStream(streamId: string): Promise<OpenStreamResult>;
  /** Closes the stream and everything in it; idempotent for a stream that has ended. */
  closeStream(streamId: string): Promise<void>;
  getRouterRtpCapabilities(streamId: string): Promise<RtpCapabilities>;

  /** A send transport lands on the origin router; a recv transport where placement puts the listener. */
  createTransport(request: CreateTransportRequest): Promise<TransportInfo>;
  connectTransport(transportId: string, dtlsParameters: DtlsParameters): Promise<void>;
  restartIce(transportId: string): Promise<{ iceParameters: IceParameters }>;

  produce(request: ProduceRequest): Promise<ProduceResult>;
  pauseProducer(producerId: string): Promise<void>;
  resumeProducer(producerId: string): Promise<void>;

  consume(request: ConsumeRequest): Promise<ConsumeResult>;
  resumeConsumer(consumerId: string): Promise<void>;
  pauseConsumer(consumerId: string): Promise<void>;

  /** Closes the peer's transports, producer and consumers; idempotent. */
  closePeer(peerId: string): Promise<void>;
  /**
   * Closes every peer whose id starts with `prefix` (the peers of an edge that is gone, see
   * bus-protocol.ts's edgePeerPrefix), their producers with reason `edge-lost`; returns how many.
   * Not callable over the bus: the node's own presence watch calls it.
   */
  closePeersOf(prefix: string): Promise<number>;

  getStats(peerId: string): Promise<PeerStats>;
  listenerCount(streamId: string): Promise<number>;
  getStreamInfo(streamId: string): Promise<StreamInfo>;
  getWorkers(): Promise<WorkerInfo[]>;

  on<K extends MediaNodeEventName>(event: K, listener: MediaNodeListener<K>): this;
  once<K extends MediaNodeEventName>(event: K, listener: MediaNodeListener<K>): this;
  off<K extends MediaNodeEventName>(event: K, listener: MediaNodeListener<K>): this;

  /** Closes every stream, then every worker. */
  close(): Promise<void>;
}
