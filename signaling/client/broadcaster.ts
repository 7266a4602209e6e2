/**
 * Broadcaster: goes live with one audio track.
 *
 *   const broadcaster = new Broadcaster({ connection });
 *   broadcaster.on('level', ({ volume, speaking }) => meter.update(volume, speaking));
 *   await broadcaster.publish(streamId, track);
 *
 * publish() loads the Device with the router capabilities the edge sent on open, joins the
 * stream as its broadcaster in one request (whose answer holds the send transport), connects it
 * and produces Opus (stereo, FEC, DTX), the produce pipelined behind the connect.
 * After a lost WebSocket, a media worker restart or a failed transport it does all of that
 * again by itself and emits `reconnected`. The track stays the caller's: it is never stopped here.
 */
import type { Producer, Transport } from 'mediasoup-client/types';
import type { Notifications } from '../protocol/index.js';
import { type BaseSessionEvents, MediaSession, type SessionOptions } from './session.js';

export type BroadcasterEvents = BaseSessionEvents & {
  /** The level of the produced audio as the SFU hears it, about 4 times a second. */
  level: [{ volume: number; speaking: boolean }];
};

export class Broadcaster extends MediaSession<BroadcasterEvents> {
  #track: MediaStreamTrack | undefined;
  #transport: Transport | undefined;
  #producer: Producer | undefined;
  #paused = false;

  constructor(options: SessionOptions) {
    super(options, 'broadcaster');
  }

  get producer(): Producer | undefined {
    return this.#producer;
  }

  /** Resolves once the audio is being produced; rejects when that cannot happen (not the owner, stream ended, ...). */
  async publish(streamId: number, track: MediaStreamTrack): Promise<void> {
    this.#track = track;
    this.begin(streamId);
    this.addCleanup(
      this.connection.on('audioLevel', (data: Notifications['audioLevel']) => {
        if (data.streamId === this.streamId)
          this.emit('level', { volume: data.volume, speaking: data.speaking });
      }),
    );
    const outcome = new Promise<void>((resolve, reject) => {
      const offs = [
        this.on('state', (state) => {
          if (state === 'live') settle();
          if (state === 'ended') settle(new Error(`stream ${streamId} has ended`));
          if (state === 'closed') settle(new Error('closed before going live'));
        }),
        this.on('error', (error) => settle(error)),
      ];
      const settle = (error?: Error) => {
        for (const off of offs) off();
        if (error) reject(error);
        else resolve();
      };
    });
    this.schedule('rejoin', 'publish');
    await outcome;
  }

  /** Mutes: the SFU stops forwarding and listeners get `producerPaused` (the track keeps running). */
  async pause(): Promise<void> {
    this.#paused = true;
    await this.#applyPause();
  }

  async resume(): Promise<void> {
    this.#paused = false;
    await this.#applyPause();
  }

  get paused(): boolean {
    return this.#paused;
  }

  async #applyPause(): Promise<void> {
    const producer = this.#producer;
    if (!producer || producer.closed) return;
    if (this.#paused) producer.pause();
    else producer.resume();
    await this.connection.request(this.#paused ? 'pauseProducer' : 'resumeProducer', {
      producerId: producer.id,
    });
  }

  /** Swaps the microphone without renegotiating. */
  async replaceTrack(track: MediaStreamTrack): Promise<void> {
    this.#track = track;
    await this.#producer?.replaceTrack({ track });
  }

  protected async negotiate(): Promise<'live'> {
    this.releaseMedia();
    const joined = await this.join();
    const transport = await this.openTransport('send', joined.transport);
    this.#transport = transport;
    transport.on('produce', ({ kind, rtpParameters }, callback, errback) => {
      if (kind !== 'audio') {
        errback(new Error('only audio can be broadcast'));
        return;
      }
      this.connection
        .request('produce', { transportId: transport.id, kind, rtpParameters })
        .then(({ producerId }) => callback({ id: producerId }), errback);
    });
    if (!this.#track) throw new Error('no track to publish');
    this.#producer = await transport.produce({
      track: this.#track,
      // The caller owns the track: a reconnect closes the producer but must be able to reuse it.
      stopTracks: false,
      codecOptions: { opusStereo: true, opusFec: true, opusDtx: true },
    });
    // A mute survives reconnections: the new producer starts muted too.
    if (this.#paused) await this.#applyPause();
    return 'live';
  }

  protected releaseMedia(): void {
    this.#producer?.close();
    this.#producer = undefined;
    this.#transport?.close();
    this.#transport = undefined;
  }
}
