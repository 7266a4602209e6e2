/**
 * The media node as its own process sees it: the API every caller reaches (defined once in
 * common/contracts/media-node.ts, so callers over the bus and in-process callers share it), plus
 * what only the node's host uses: its events, its workers, closing an edge's peers, closing it.
 */
import type { types as ms } from 'mediasoup';
import type {
  MediaGatewayEvents,
  MediaNodeApi,
  MediaNodeLoad,
  ProducerCloseReason,
} from '../common/contracts/index.js';
import type { WorkerDiedEvent, WorkerReplacedEvent } from './worker-pool.js';

export type {
  ConsumeRequest,
  ConsumeResult,
  ConsumerStats,
  CreateTransportRequest,
  MediaNodeApi,
  OpenStreamResult,
  PeerStats,
  ProduceRequest,
  ProduceResult,
  ProducerCloseReason,
  ProducerStats,
  RtpStreamStats,
  StreamInfo,
  StreamRouterInfo,
  TransportDirection,
  TransportInfo,
  TransportStats,
  TupleStats,
} from '../common/contracts/index.js';
export type { WorkerDiedEvent, WorkerReplacedEvent } from './worker-pool.js';

export type MediaNodePlacementState = Pick<
  MediaNodeLoad,
  'listeners' | 'maxListeners' | 'zone' | 'draining' | 'streams'
>;

export type RtpCapabilities = ms.RtpCapabilities;
export type RtpParameters = ms.RtpParameters;
export type DtlsParameters = ms.DtlsParameters;
export type IceParameters = ms.IceParameters;
export type IceCandidate = ms.IceCandidate;
export type DtlsState = ms.DtlsState;

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

/** Every event of the node: those it publishes for the edges (the contract's), and its own. */
export interface MediaNodeEvents extends MediaGatewayEvents {
  streamOpened: { streamId: string; workerIndex: number };
  producerClosed: { streamId: string; peerId: string; producerId: string; reason: ProducerCloseReason };
  transportDtlsState: { streamId: string; peerId: string; transportId: string; state: DtlsState };
  workerDied: WorkerDiedEvent;
  workerReplaced: WorkerReplacedEvent;
}

export type MediaNodeEventName = keyof MediaNodeEvents;
export type MediaNodeListener<K extends MediaNodeEventName> = (event: MediaNodeEvents[K]) => void;

export interface MediaNode extends MediaNodeApi {
  readonly nodeId: string;

  /**
   * Closes every peer whose id starts with `prefix` (the peers of an edge that is gone, see the
   * contract's edgePeerPrefix), their producers with reason `edge-lost`; returns how many.
   * Not callable over the bus: the node's own presence watch calls it.
   */
  closePeersOf(prefix: string): Promise<number>;
  getWorkers(): Promise<WorkerInfo[]>;
  /**
   * The process id of the ffmpeg recording a stream right now; undefined when it is not recorded
   * here (or between a recorder's death and its restart). Not callable over the bus.
   */
  recorderPid(streamId: string): number | undefined;
  /**
   * Resolves once the node's spare recorder (an ffmpeg waiting for RTP) listens, so the next
   * recorded producer is recorded from its first packet; at once on a node that records nothing.
   */
  recorderReady(): Promise<void>;
  /** What the node's heartbeat tells placement besides its load: listeners, cap, zone, draining, streams carried. */
  placementState(): MediaNodePlacementState;
  /** Takes no new listener from now on (the node still serves the ones it has). */
  drain(): void;

  on<K extends MediaNodeEventName>(event: K, listener: MediaNodeListener<K>): this;
  once<K extends MediaNodeEventName>(event: K, listener: MediaNodeListener<K>): this;
  off<K extends MediaNodeEventName>(event: K, listener: MediaNodeListener<K>): this;

  /** Closes every stream, then every worker. */
  close(): Promise<void>;
}
