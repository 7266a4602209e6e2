/**
 * Real WebRTC peers in Node for the media-server tests: mediasoup-client's Device (the Chrome111
 * handler, as in the browser) over @roamhq/wrtc's libwebrtc, with real Opus encoding and decoding.
 * A publisher sends a sine wave through `nonstandard.RTCAudioSource`; a listener decodes through
 * `nonstandard.RTCAudioSink` and measures the RMS of what it hears.
 *
 * Every call to the media node goes through a JSON round trip, as it will over NATS in cluster mode.
 */
import wrtc from '@roamhq/wrtc';
import { Device, type types as mc } from 'mediasoup-client';
import { ROUTER_RTP_CAPABILITIES, type TransportInfo } from '../../common/contracts/index.js';
import type { MediaNode } from '../index.js';

/** mediasoup-client looks these up as globals, as in a browser. */
export function installWrtcGlobals(): void {
  Object.assign(globalThis, {
    RTCPeerConnection: wrtc.RTCPeerConnection,
    RTCSessionDescription: wrtc.RTCSessionDescription,
    RTCIceCandidate: wrtc.RTCIceCandidate,
    MediaStream: wrtc.MediaStream,
    MediaStreamTrack: wrtc.MediaStreamTrack,
  });
}

/** What crosses the bus: plain JSON, nothing else. */
export function viaJson<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

/**
 * A JSON round trip between mediasoup's and mediasoup-client's declarations of the same wire shapes
 * (they differ in optionality and literal types, not in content).
 */
function across<T>(value: unknown): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function until<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  {
    timeoutMs = 10_000,
    intervalMs = 20,
    what = 'condition',
  }: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

const SAMPLE_RATE = 48_000;
const FRAME_SAMPLES = 480; // 10 ms

/** A 440 Hz (by default) sine, fed in 10 ms frames at real-time pace to every track made from it. */
export class SineSource {
  readonly frequency: number;
  readonly amplitude: number;
  readonly #source = new wrtc.nonstandard.RTCAudioSource();
  readonly #tracks: MediaStreamTrack[] = [];
  #timer: NodeJS.Timeout | undefined;
  #phase = 0;

  constructor({ frequency = 440, amplitude = 0.5 }: { frequency?: number; amplitude?: number } = {}) {
    this.frequency = frequency;
    this.amplitude = amplitude;
  }

  /** RMS of the source in 16-bit sample units. */
  get rms(): number {
    return (this.amplitude * 32767) / Math.SQRT2;
  }

  track(): MediaStreamTrack {
    const track = this.#source.createTrack();
    this.#tracks.push(track);
    return track;
  }

  start(): void {
    if (this.#timer) return;
    const started = performance.now();
    let sent = 0;
    // Timers drift under load; send every frame that is due, so the pace stays real time.
    this.#timer = setInterval(() => {
      const due = Math.floor((performance.now() - started) / 10);
      for (; sent < due; sent++) this.#source.onData(this.#frame());
    }, 5);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    for (const track of this.#tracks.splice(0)) track.stop();
  }

  #frame(): {
    samples: Int16Array;
    sampleRate: number;
    bitsPerSample: number;
    channelCount: number;
    numberOfFrames: number;
  } {
    const samples = new Int16Array(FRAME_SAMPLES);
    const peak = this.amplitude * 32767;
    const step = (2 * Math.PI * this.frequency) / SAMPLE_RATE;
    for (let i = 0; i < FRAME_SAMPLES; i++) {
      samples[i] = Math.round(peak * Math.sin(this.#phase));
      this.#phase += step;
    }
    this.#phase %= 2 * Math.PI;
    return {
      samples,
      sampleRate: SAMPLE_RATE,
      bitsPerSample: 16,
      channelCount: 1,
      numberOfFrames: FRAME_SAMPLES,
    };
  }
}

async function loadDevice(node: MediaNode, streamId: string): Promise<Device> {
  const device = new Device({ handlerName: 'Chrome111' });
  await device.load({ routerRtpCapabilities: across(await node.getRouterRtpCapabilities(streamId)) });
  return device;
}

function clientTransportOptions(info: TransportInfo): mc.TransportOptions {
  return {
    id: info.transportId,
    iceParameters: info.iceParameters,
    iceCandidates: across(info.iceCandidates),
    dtlsParameters: across(info.dtlsParameters),
  };
}

export interface PeerOptions {
  streamId: string;
  peerId: string;
}

export class TestPublisher {
  readonly node: MediaNode;
  readonly options: PeerOptions;
  readonly source: SineSource;
  #device: Device | undefined;
  #transport: mc.Transport | undefined;
  producerId = '';

  private constructor(node: MediaNode, options: PeerOptions, source: SineSource) {
    this.node = node;
    this.options = options;
    this.source = source;
  }

  static async start(node: MediaNode, options: PeerOptions, source: SineSource): Promise<TestPublisher> {
    const publisher = new TestPublisher(node, options, source);
    await publisher.connect();
    return publisher;
  }

  /** (Re)creates the send transport and produces: what the client does after a worker restart. */
  async connect(): Promise<void> {
    const { node } = this;
    const { streamId, peerId } = this.options;
    this.#transport?.close();
    this.#device ??= await loadDevice(node, streamId);
    const info = viaJson(await node.createTransport(viaJson({ streamId, peerId, direction: 'send' })));
    const transport = this.#device.createSendTransport(clientTransportOptions(info));
    this.#transport = transport;
    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      node.connectTransport(info.transportId, viaJson(dtlsParameters)).then(callback, errback);
    });
    transport.on('produce', ({ kind, rtpParameters }, callback, errback) => {
      if (kind !== 'audio') return errback(new Error('audio only'));
      node
        .produce(viaJson({ transportId: info.transportId, peerId, kind, rtpParameters }))
        .then(({ producerId }) => callback({ id: producerId }), errback);
    });
    const producer = await transport.produce({ track: this.source.track(), stopTracks: false });
    this.producerId = producer.id;
  }

  close(): void {
    this.#transport?.close();
    this.#transport = undefined;
  }
}

interface SinkData {
  samples: Int16Array;
}

/** wrtc's RTCAudioSink, typed by what we use (its declaration leaves `ondata` untyped). */
interface AudioSink {
  stop(): void;
  ondata: ((data: SinkData) => void) | null;
}

export class TestListener {
  readonly node: MediaNode;
  readonly options: PeerOptions & { tamperDtls?: boolean };
  #device: Device | undefined;
  #transport: mc.Transport | undefined;
  #sink: AudioSink | undefined;
  /** Sum of squares and sample count per received 10 ms frame, newest last. */
  #frames: { squares: number; count: number }[] = [];
  info: TransportInfo | undefined;
  consumerId = '';

  private constructor(node: MediaNode, options: PeerOptions & { tamperDtls?: boolean }) {
    this.node = node;
    this.options = options;
  }

  static async join(node: MediaNode, options: PeerOptions): Promise<TestListener> {
    const listener = new TestListener(node, options);
    await listener.connect();
    return listener;
  }

  /**
   * Joins as the edge's one-request join does: the Device loaded from the static router
   * capabilities, then one joinStream call for the transport and the consumer (none while nobody
   * produces: `consume()` later).
   */
  static async joinInOne(node: MediaNode, options: PeerOptions): Promise<TestListener> {
    const listener = new TestListener(node, options);
    listener.close();
    listener.#device ??= new Device({ handlerName: 'Chrome111' });
    if (!listener.#device.loaded)
      await listener.#device.load({ routerRtpCapabilities: across(ROUTER_RTP_CAPABILITIES) });
    const placed = viaJson(
      await node.joinStream(
        viaJson({
          streamId: options.streamId,
          peerId: options.peerId,
          role: 'listener',
          rtpCapabilities: listener.#device.rtpCapabilities,
        }),
      ),
    );
    listener.#wire(placed.transport);
    if (placed.consumer) await listener.#receive(placed.consumer);
    return listener;
  }

  /** Creates the recv transport only (no consume): for tests of the transport itself. */
  static async transportOnly(
    node: MediaNode,
    options: PeerOptions & { tamperDtls?: boolean },
  ): Promise<TestListener> {
    const listener = new TestListener(node, options);
    await listener.#createTransport();
    return listener;
  }

  get workerIndex(): number {
    if (!this.info) throw new Error('not connected');
    return this.info.workerIndex;
  }

  get transport(): mc.Transport | undefined {
    return this.#transport;
  }

  /** (Re)creates the recv transport and consumes: what the client does after a worker restart. */
  async connect(): Promise<void> {
    await this.#createTransport();
    await this.consume();
  }

  async consume(): Promise<void> {
    const transport = this.#transport;
    const info = this.info;
    if (!transport || !info || !this.#device) throw new Error('no transport');
    const { node } = this;
    const consumed = viaJson(
      await node.consume(
        viaJson({
          transportId: info.transportId,
          peerId: this.options.peerId,
          rtpCapabilities: this.#device.rtpCapabilities,
        }),
      ),
    );
    await this.#receive(consumed);
  }

  async #receive(consumed: {
    consumerId: string;
    producerId: string;
    kind: 'audio';
    rtpParameters: unknown;
  }): Promise<void> {
    const transport = this.#transport;
    if (!transport) throw new Error('no transport');
    const consumer = await transport.consume({
      id: consumed.consumerId,
      producerId: consumed.producerId,
      kind: consumed.kind,
      rtpParameters: across(consumed.rtpParameters),
    });
    this.consumerId = consumed.consumerId;
    this.#listen(consumer.track);
    await this.node.resumeConsumer(consumed.consumerId);
  }

  /** RMS (16-bit units) of the last `frames` 10 ms frames, or undefined before that many arrived. */
  rms(frames = 50): number | undefined {
    if (this.#frames.length < frames) return undefined;
    let squares = 0;
    let count = 0;
    for (const frame of this.#frames.slice(-frames)) {
      squares += frame.squares;
      count += frame.count;
    }
    return count === 0 ? 0 : Math.sqrt(squares / count);
  }

  /** Forgets what was heard so far, so the next measurement covers only what arrives from now on. */
  resetMeter(): void {
    this.#frames = [];
  }

  /** RMS of the next `frames` frames heard from now on. */
  async measureRms(frames = 100): Promise<number> {
    this.resetMeter();
    return until(() => this.rms(frames), { timeoutMs: frames * 10 + 5000, what: `${frames} frames` });
  }

  /** Resolves when the last `frames` frames have an RMS within `tolerance` of `target`. */
  async waitForRms(
    target: number,
    {
      tolerance = 0.1,
      frames = 50,
      timeoutMs = 10_000,
    }: { tolerance?: number; frames?: number; timeoutMs?: number } = {},
  ): Promise<number> {
    return until(
      () => {
        const rms = this.rms(frames);
        return rms !== undefined && Math.abs(rms - target) <= tolerance * target ? rms : undefined;
      },
      {
        timeoutMs,
        what: `${this.options.peerId} to hear RMS ${target.toFixed(0)} ±${tolerance * 100}% (last: ${this.rms(frames)?.toFixed(0)})`,
      },
    );
  }

  close(): void {
    this.#sink?.stop();
    this.#sink = undefined;
    this.#transport?.close();
    this.#transport = undefined;
  }

  async #createTransport(): Promise<void> {
    const { node } = this;
    const { streamId, peerId } = this.options;
    this.close();
    this.#frames = [];
    this.#device ??= await loadDevice(node, streamId);
    this.#wire(viaJson(await node.createTransport(viaJson({ streamId, peerId, direction: 'recv' }))));
  }

  /** The local recv transport for the node's `info`, connected on first use. */
  #wire(info: TransportInfo): void {
    const { node } = this;
    const { tamperDtls } = this.options;
    if (!this.#device) throw new Error('no device');
    this.info = info;
    const transport = this.#device.createRecvTransport(clientTransportOptions(info));
    this.#transport = transport;
    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      const sent = viaJson(dtlsParameters);
      if (tamperDtls) {
        // Well-formed, but not this peer's certificate: the handshake must fail.
        for (const fingerprint of sent.fingerprints) {
          fingerprint.value = fingerprint.value.replace(/[0-9A-F]/, (digit) => (digit === 'A' ? 'B' : 'A'));
        }
      }
      node.connectTransport(info.transportId, sent).then(callback, errback);
    });
  }

  #listen(track: MediaStreamTrack): void {
    this.#sink?.stop();
    const sink = new wrtc.nonstandard.RTCAudioSink(track) as unknown as AudioSink;
    this.#frames = [];
    sink.ondata = ({ samples }) => {
      let squares = 0;
      for (const sample of samples) squares += sample * sample;
      this.#frames.push({ squares, count: samples.length });
      if (this.#frames.length > 500) this.#frames.splice(0, this.#frames.length - 500);
    };
    this.#sink = sink;
  }
}
