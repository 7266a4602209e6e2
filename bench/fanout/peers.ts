/**
 * node-datachannel peers that speak the real signaling protocol (SignalingConnection, the
 * protocol layer of signaling/client): a probe publisher and probe listeners. They are raw RTP
 * peers, far cheaper than a browser stack, which is what lets one machine hold 1,000 of them.
 *
 * Keep a reference to every PeerConnection and Track: node-datachannel peers without one are
 * garbage-collected, and a few seconds later their media stops.
 */

import type { RtpCapabilities, RtpCodecCapability } from 'mediasoup-client/types';
import nodeDataChannel from 'node-datachannel';
import { SignalingConnection, SignalingError } from '../../signaling/client/index.js';
import { nodeWebSocket } from '../lib/ws.js';
import { localDtlsParameters, remoteAnswer, udpAddressOf } from './sdp.js';

const { Audio, PeerConnection } = nodeDataChannel;
type PeerConnection = InstanceType<typeof PeerConnection>;
type Track = ReturnType<PeerConnection['addTrack']>;

export interface SignalingTarget {
  /** ws(s):// or http(s):// URL of the signaling endpoint (`/ws`). */
  url: string;
  /** null: an anonymous listener (no token). */
  token: string | null;
  streamId: number;
}

function connection(target: SignalingTarget): SignalingConnection {
  return new SignalingConnection({
    url: target.url,
    ...(target.token ? { token: target.token } : {}),
    WebSocket: nodeWebSocket(),
    // A loaded SFU answers slowly; a benchmark reports that, it does not retry it.
    requestTimeoutMs: 60_000,
    reconnect: false,
  });
}

function opusOf(capabilities: RtpCapabilities): RtpCodecCapability {
  const opus = capabilities.codecs?.find((codec) => codec.mimeType.toLowerCase() === 'audio/opus');
  if (!opus) throw new Error('the router offers no Opus codec');
  return opus;
}

function newPeer(name: string): PeerConnection {
  // We offer, then set the SFU's answer ourselves once it knows our DTLS fingerprint.
  return new PeerConnection(name, { iceServers: [], disableAutoNegotiation: true });
}

function localOffer(pc: PeerConnection): string {
  pc.setLocalDescription('offer');
  const description = pc.localDescription();
  if (!description) throw new Error('node-datachannel produced no local description');
  return description.sdp;
}

export class ProbePublisher {
  readonly signaling: SignalingConnection;
  #pc: PeerConnection | undefined;
  #track: Track | undefined;
  payloadType = 0;
  readonly ssrc = (Math.random() * 0xffffffff) >>> 0;

  constructor(readonly target: SignalingTarget) {
    this.signaling = connection(target);
  }

  /** Joins as broadcaster, produces, and resolves once SRTP is up (the track is open). */
  async publish(): Promise<void> {
    await this.signaling.connect();
    const opus = opusOf(await this.signaling.routerRtpCapabilities());
    this.payloadType = opus.preferredPayloadType ?? 100;
    // The one-request join: its answer holds the send transport.
    const joined = await this.signaling.request('join', {
      streamId: this.target.streamId,
      role: 'broadcaster',
      rtpCapabilities: deviceCapabilities(opus),
    });
    const info = joined.transport;
    if (!info) throw new Error('join answered without a transport');
    const pc = newPeer('probe-publisher');
    this.#pc = pc;
    const audio = new Audio('0', 'SendOnly');
    audio.addOpusCodec(this.payloadType);
    audio.addSSRC(this.ssrc, 'veza-bench', 'veza', 'bench');
    const track = pc.addTrack(audio);
    this.#track = track;
    const open = new Promise<void>((resolve, reject) => {
      track.onOpen(() => resolve());
      track.onError((error) => reject(new Error(`publisher track: ${error}`)));
    });
    const offer = localOffer(pc);
    // Pipelined with produce, as the client library does: the edge handles them in order.
    const connected = this.signaling.request('connectTransport', {
      transportId: info.id,
      dtlsParameters: localDtlsParameters(offer),
    });
    const codec = {
      mimeType: 'audio/opus',
      payloadType: this.payloadType,
      clockRate: 48000,
      channels: 2,
      parameters: { useinbandfec: 1 },
      rtcpFeedback: [],
    };
    pc.setRemoteDescription(
      remoteAnswer({ transport: info, mid: '0', direction: 'recvonly', rtpParameters: { codecs: [codec] } }),
      'answer',
    );
    const produced = this.signaling.request('produce', {
      transportId: info.id,
      kind: 'audio',
      rtpParameters: {
        mid: '0',
        codecs: [codec],
        headerExtensions: [],
        encodings: [{ ssrc: this.ssrc }],
        rtcp: { cname: 'veza-bench', reducedSize: true },
      },
    });
    await Promise.all([connected, produced]);
    await withTimeout(open, 15_000, 'publisher DTLS/SRTP did not come up');
  }

  send(packet: Buffer): boolean {
    return this.#track?.sendMessageBinary(packet) ?? false;
  }

  close(): void {
    this.#track?.close();
    this.#pc?.close();
    this.signaling.close();
  }
}

/** How long a listener joined without audio waits for `streamStarted`. */
const AUDIO_WAIT_MS = 15_000;

/**
 * The steps of a listener's join, timed one by one; `media` (ICE, DTLS, first packet) is timed by
 * the caller. `websocket` includes the router capabilities the edge sends as its first frame.
 */
export const JOIN_PHASES = ['websocket', 'join', 'connectAndResume', 'media'] as const;
export type JoinPhase = (typeof JOIN_PHASES)[number];

/** The capabilities a probe listener joins with: Opus as the router offers it, nothing else. */
function deviceCapabilities(opus: RtpCodecCapability): RtpCapabilities {
  return {
    codecs: [
      {
        kind: 'audio',
        mimeType: 'audio/opus',
        preferredPayloadType: opus.preferredPayloadType ?? 100,
        clockRate: 48000,
        channels: 2,
        parameters: {},
        rtcpFeedback: [],
      },
    ],
    headerExtensions: [],
  };
}

/**
 * One listener, as the client library joins: WebSocket (with the router capabilities pushed on
 * open), one `join` answering with the recv transport and the consumer, then connectTransport
 * and resumeConsumer pipelined.
 */
export class ProbeListener {
  readonly signaling: SignalingConnection;
  #pc: PeerConnection | undefined;
  #track: Track | undefined;
  payloadType = 0;
  closed = false;
  /** ms spent in each signaling step of listen(). */
  readonly phases: Partial<Record<JoinPhase, number>> = {};
  /** performance.now() when listen() returned (the consumer resumed). */
  signaledAt = 0;
  /** The join answered without a consumer: the listener waited for `streamStarted` and consumed then. */
  waitedForAudio = false;
  /**
   * The address of the SFU's UDP candidate in the join answer: with media nodes on addresses of
   * their own (`--nodes`), which node serves this listener.
   */
  serverAddress = '';

  constructor(
    readonly target: SignalingTarget,
    readonly onPacket: (packet: Buffer) => void,
    readonly onFailure: (reason: string) => void,
  ) {
    this.signaling = connection(target);
    this.signaling.on('close', (info) => {
      if (!this.closed) this.onFailure(`signaling closed (${info.code} ${info.reason})`);
    });
  }

  async #timed<T>(phase: JoinPhase, work: () => Promise<T>): Promise<T> {
    const started = performance.now();
    const result = await work();
    this.phases[phase] = performance.now() - started;
    return result;
  }

  async listen(name: string): Promise<void> {
    const s = this.signaling;
    const opus = await this.#timed('websocket', async () => {
      await s.connect();
      return opusOf(await s.routerRtpCapabilities());
    });
    const streamId = this.target.streamId;
    // Listening before the join: the audio may be announced between the join and its answer.
    let audioAnnounced = false;
    let wakeOnAudio: () => void = () => {};
    const offAudio = s.on('streamStarted', (data) => {
      if (data.streamId !== streamId) return;
      audioAnnounced = true;
      wakeOnAudio();
    });
    const { info, offer } = await this.#timed('join', async () => {
      try {
        const joined = await s.request('join', {
          streamId,
          role: 'listener',
          rtpCapabilities: deviceCapabilities(opus),
        });
        const transport = joined.transport;
        if (!transport) throw new Error('join answered without a transport');
        if (joined.consumer) return { info: transport, offer: joined.consumer };
        // The probe publisher is live before any listener joins, but a relay node placed to serve
        // this listener may still be pulling the stream (`--nodes`): as the client library does,
        // wait for streamStarted, then consume. The wait counts in the join phase.
        this.waitedForAudio = true;
        const deadline = performance.now() + AUDIO_WAIT_MS;
        for (;;) {
          if (!audioAnnounced) {
            const announced = new Promise<void>((resolve) => {
              wakeOnAudio = resolve;
            });
            await withTimeout(
              announced,
              Math.max(1, deadline - performance.now()),
              'join answered without a consumer and no streamStarted came',
            );
          }
          audioAnnounced = false;
          try {
            const consumer = await s.request('consume', {
              transportId: transport.id,
              rtpCapabilities: deviceCapabilities(opus),
            });
            return { info: transport, offer: consumer };
          } catch (error) {
            // Announced, then gone again before our consume: wait for the next announcement.
            if (!(error instanceof SignalingError && error.reason === 'no_audio')) throw error;
          }
        }
      } finally {
        offAudio();
      }
    });
    this.serverAddress = udpAddressOf(info);
    const codec = offer.rtpParameters.codecs[0];
    if (!codec) throw new Error('the consumer has no codec');
    this.payloadType = codec.payloadType;
    const mid = offer.rtpParameters.mid ?? '0';
    const pc = newPeer(name);
    this.#pc = pc;
    pc.onStateChange((state) => {
      if ((state === 'failed' || state === 'closed') && !this.closed)
        this.onFailure(`peer connection ${state}`);
    });
    const audio = new Audio(mid, 'RecvOnly');
    audio.addOpusCodec(codec.payloadType);
    const track = pc.addTrack(audio);
    this.#track = track;
    track.onMessage((packet) => this.onPacket(packet));
    const local = localOffer(pc);
    await this.#timed('connectAndResume', async () => {
      // Both sent before either answer: the edge handles one connection's requests in order.
      const connected = s.request('connectTransport', {
        transportId: info.id,
        dtlsParameters: localDtlsParameters(local),
      });
      const resumed = s.request('resumeConsumer', { consumerId: offer.consumerId });
      pc.setRemoteDescription(
        remoteAnswer({ transport: info, mid, direction: 'sendonly', rtpParameters: offer.rtpParameters }),
        'answer',
      );
      await Promise.all([connected, resumed]);
    });
    this.signaledAt = performance.now();
  }

  close(): void {
    this.closed = true;
    this.#track?.close();
    this.#pc?.close();
    this.signaling.close();
  }
}

export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${message} (after ${ms} ms)`)), ms);
    }),
  ]);
}
