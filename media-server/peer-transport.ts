/**
 * A peer's WebRtcTransport: send (the broadcaster's, on the origin router) or recv (a listener's, on the
 * router placement chose). Tracks DTLS state, and gives the errors of connect and ICE restart our codes.
 */
import { EventEmitter } from 'node:events';
import type { types as ms } from 'mediasoup';
import {
  FailedPreconditionError,
  type TransportDirection,
  type TransportInfo,
} from '../common/contracts/index.js';
import { fromMediasoupError } from './errors.js';
import { type TransportStats, transportStats } from './stats.js';
import type { StreamRouter } from './stream-router.js';

export interface PeerTransportEvents {
  dtlsstatechange: [ms.DtlsState];
  /** Fired once, whatever closed it (the peer, the stream, a replacement, a DTLS failure or the worker dying). */
  close: [];
}

export class PeerTransport extends EventEmitter<PeerTransportEvents> {
  readonly transport: ms.WebRtcTransport;
  readonly direction: TransportDirection;
  readonly streamRouter: StreamRouter;
  readonly peerId: string;
  readonly streamId: string;
  #connectCalled = false;

  constructor(options: {
    transport: ms.WebRtcTransport;
    direction: TransportDirection;
    streamRouter: StreamRouter;
    peerId: string;
    streamId: string;
  }) {
    super();
    this.transport = options.transport;
    this.direction = options.direction;
    this.streamRouter = options.streamRouter;
    this.peerId = options.peerId;
    this.streamId = options.streamId;
    this.transport.on('dtlsstatechange', (state) => {
      this.emit('dtlsstatechange', state);
      // A failed or closed DTLS session never recovers on the same transport: free it, the client makes a new one.
      if (state === 'failed' || state === 'closed') this.close();
    });
    this.transport.observer.once('close', () => this.emit('close'));
  }

  get id(): string {
    return this.transport.id;
  }

  get closed(): boolean {
    return this.transport.closed;
  }

  get dtlsState(): ms.DtlsState {
    return this.transport.dtlsState;
  }

  info(): TransportInfo {
    return {
      transportId: this.transport.id,
      iceParameters: this.transport.iceParameters,
      // mediasoup 3.12 names the candidate's address `ip`; mediasoup-client 3.24 reads `address`.
      iceCandidates: this.transport.iceCandidates.map((candidate) => ({
        ...candidate,
        address: candidate.ip,
      })),
      dtlsParameters: {
        ...this.transport.dtlsParameters,
        // mediasoup 3.12 types the algorithm as a string; its values are the contract's five.
        fingerprints: this.transport.dtlsParameters
          .fingerprints as TransportInfo['dtlsParameters']['fingerprints'],
      },
      workerIndex: this.streamRouter.workerIndex,
    };
  }

  async connect(dtlsParameters: ms.DtlsParameters): Promise<void> {
    // The worker answers a second connect with a plain Error, which would surface as `internal`.
    if (this.#connectCalled) throw new FailedPreconditionError(`transport ${this.id} is already connected`);
    this.#connectCalled = true;
    try {
      await this.transport.connect({ dtlsParameters });
    } catch (error) {
      this.#connectCalled = false;
      throw fromMediasoupError(error, { what: 'bad dtlsParameters', field: 'dtlsParameters' });
    }
  }

  async restartIce(): Promise<ms.IceParameters> {
    try {
      return await this.transport.restartIce();
    } catch (error) {
      throw fromMediasoupError(error, { what: `ICE restart of transport ${this.id} failed` });
    }
  }

  stats(): Promise<TransportStats> {
    return transportStats(this.transport, this.direction, this.streamRouter.workerIndex);
  }

  close(): void {
    this.transport.close();
  }
}
