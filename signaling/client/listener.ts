/**
 * Listener: plays one stream.
 *
 *   const listener = new Listener({ connection });
 *   listener.on('track', (track) => { audio.srcObject = new MediaStream([track]); });
 *   listener.on('ended', () => showEnded());
 *   await listener.listen(streamId);
 *
 * listen() joins the stream in one request, whose answer holds the receive transport and the
 * broadcaster's audio as a consumer (created paused on the server), and resumes it once the
 * local consumer exists, so no early packets are lost; the resume goes out right behind the
 * transport's connect, without waiting for its answer. When the broadcaster is not sending yet, or comes back after a drop, the
 * listener waits for `streamStarted` and consumes then. A media worker restart, a failed
 * transport or a lost WebSocket re-runs the whole negotiation; each new track is emitted as
 * `track` (and `reconnected` says why).
 */
import type { Consumer, Transport } from 'mediasoup-client/types';
import { VezaError } from '../../common/contracts/browser.js';
import type { ConsumerOffer, Notifications, PeerStats } from '../protocol/index.js';
import { SignalingError } from './connection.js';
import { type BaseSessionEvents, MediaSession, type RunMode, type SessionOptions } from './session.js';

export type ListenerEvents = BaseSessionEvents & {
  /** A new track to play; replaces the previous one after a reconnection. */
  track: [MediaStreamTrack];
  /** The broadcaster paused (muted) their audio, or resumed it. */
  paused: [];
  resumed: [];
};

export class Listener extends MediaSession<ListenerEvents> {
  #transport: Transport | undefined;
  #consumer: Consumer | undefined;
  /** The producer the last `streamStarted` announced, for the consume it schedules. */
  #announcedProducerId: string | undefined;

  constructor(options: SessionOptions) {
    super(options, 'listener');
  }

  get consumer(): Consumer | undefined {
    return this.#consumer;
  }

  /** The receive transport: its getStats() is the WebRTC stack's own view (received, lost, jitter). */
  get transport(): Transport | undefined {
    return this.#transport;
  }

  /** Resolves with the first track; rejects if the stream has ended or may not be heard. */
  async listen(streamId: number): Promise<MediaStreamTrack> {
    this.begin(streamId);
    const own =
      <T extends { streamId: number }>(handler: (data: T) => void) =>
      (data: T) => {
        if (data.streamId === this.streamId && !this.finished) handler(data);
      };
    this.addCleanup(
      this.connection.on(
        'streamStarted',
        own((data: Notifications['streamStarted']) => {
          this.#announcedProducerId = data.producerId;
          if (!this.#hears(data.producerId)) this.schedule('consume', 'broadcaster is back');
        }),
      ),
    );
    this.addCleanup(
      this.connection.on(
        'producerClosed',
        own((data: Notifications['producerClosed']) => {
          if (this.#consumer?.producerId !== data.producerId) return;
          this.#closeConsumer();
          this.setState('waiting');
        }),
      ),
    );
    this.addCleanup(
      this.connection.on(
        'producerPaused',
        own(() => this.emit('paused')),
      ),
    );
    this.addCleanup(
      this.connection.on(
        'producerResumed',
        own(() => this.emit('resumed')),
      ),
    );

    const first = new Promise<MediaStreamTrack>((resolve, reject) => {
      const offs = [
        this.on('track', (track) => settle(undefined, track)),
        this.on('state', (state) => {
          if (state === 'ended') settle(new VezaError('failed_precondition', `stream ${streamId} has ended`));
          if (state === 'closed') settle(new Error('closed before the audio arrived'));
        }),
        this.on('error', (error) => settle(error)),
      ];
      const settle = (error?: Error, track?: MediaStreamTrack) => {
        for (const off of offs) off();
        if (track) resolve(track);
        else reject(error);
      };
    });
    this.schedule('rejoin', 'listen');
    return first;
  }

  /** Connection quality as the SFU measures it (score, packet loss, bitrate, RTT). */
  getStats(): Promise<PeerStats> {
    return this.connection.request('getStats', {});
  }

  protected async negotiate(mode: RunMode): Promise<'live' | 'waiting'> {
    if (mode === 'rejoin' || !this.#transport || this.#transport.closed) {
      this.releaseMedia();
      const joined = await this.join();
      this.#transport = await this.openTransport('recv', joined.transport);
      // The one-request join answered with the consumer already (null: no audio yet).
      if (joined.consumer !== undefined) {
        return joined.consumer ? this.#receive(this.#transport, joined.consumer) : 'waiting';
      }
    }
    // A `streamStarted` that arrived while the join was in flight (a relay node starting to carry
    // the stream announces the producer the join just consumed) asks for nothing new: consuming
    // again would drop the fresh consumer and gap the audio.
    if (this.#announcedProducerId && this.#hears(this.#announcedProducerId)) return 'live';
    return this.#consume(this.#transport!);
  }

  /** Whether the current consumer is alive and carries this producer. */
  #hears(producerId: string): boolean {
    return this.#consumer !== undefined && !this.#consumer.closed && this.#consumer.producerId === producerId;
  }

  async #consume(transport: Transport): Promise<'live' | 'waiting'> {
    this.#closeConsumer();
    let offer: ConsumerOffer;
    try {
      offer = await this.connection.request('consume', {
        transportId: transport.id,
        rtpCapabilities: this.device!.recvRtpCapabilities,
      });
    } catch (error) {
      // No audio yet (or not any more): `streamStarted` will say when to try again.
      if (error instanceof SignalingError && error.reason === 'no_audio') return 'waiting';
      throw error;
    }
    return this.#receive(transport, offer);
  }

  /**
   * The local consumer, then resumeConsumer: sent right behind the transport's connectTransport
   * (which the local consume triggers) without waiting for its answer; the edge handles them in order.
   */
  async #receive(transport: Transport, offer: ConsumerOffer): Promise<'live'> {
    this.#closeConsumer();
    const consumer = await transport.consume({
      id: offer.consumerId,
      producerId: offer.producerId,
      kind: offer.kind,
      rtpParameters: offer.rtpParameters,
    });
    this.#consumer = consumer;
    await this.connection.request('resumeConsumer', { consumerId: consumer.id });
    this.emit('track', consumer.track);
    return 'live';
  }

  #closeConsumer(): void {
    this.#consumer?.close();
    this.#consumer = undefined;
  }

  protected releaseMedia(): void {
    this.#closeConsumer();
    this.#transport?.close();
    this.#transport = undefined;
  }
}
