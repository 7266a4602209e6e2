/**
 * Running the client library in Node (tests and benchmarks), never in the browser bundle:
 * @roamhq/wrtc provides RTCPeerConnection and friends for mediasoup-client's Chrome111
 * handler, a sine-wave microphone (RTCAudioSource) and a decoded-audio tap (RTCAudioSink).
 */
import { createRequire } from 'node:module';
import wrtc from '@roamhq/wrtc';
import type { WebSocketConstructor } from '../connection.js';

/** The handler name to pass to Broadcaster/Listener in Node, once installWrtcGlobals() ran. */
export const NODE_HANDLER_NAME = 'Chrome111' as const;

/** mediasoup-client's handlers use the browser globals; wrtc supplies them. Idempotent. */
export function installWrtcGlobals(): void {
  const globals = globalThis as Record<string, unknown>;
  const provided = {
    RTCPeerConnection: wrtc.RTCPeerConnection,
    RTCSessionDescription: wrtc.RTCSessionDescription,
    RTCIceCandidate: wrtc.RTCIceCandidate,
    MediaStream: wrtc.MediaStream,
    MediaStreamTrack: wrtc.MediaStreamTrack,
  };
  for (const [name, value] of Object.entries(provided)) globals[name] ??= value;
}

/**
 * A WHATWG WebSocket for Node 20, which has no global one without a flag. `ws` (a devDependency) ships with
 * our uWebSockets.js package (its JavaScript fallback depends on it) and implements the
 * browser API this client uses.
 */
export function nodeWebSocket(): WebSocketConstructor {
  const require = createRequire(import.meta.url);
  const globalWs = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  return globalWs ?? (require('ws') as WebSocketConstructor);
}

export interface SineSource {
  track: MediaStreamTrack;
  /** RMS of the generated samples (amplitude / sqrt 2). */
  rms: number;
  stop(): void;
}

const SAMPLE_RATE = 48_000;
const FRAME = SAMPLE_RATE / 100;

/** A mono sine "microphone": 10 ms frames, paced by the wall clock so none are skipped or doubled. */
export function sineSource(options: { frequency?: number; amplitude?: number } = {}): SineSource {
  const frequency = options.frequency ?? 440;
  const amplitude = options.amplitude ?? 0.5 * 32767;
  const source = new wrtc.nonstandard.RTCAudioSource();
  const track = source.createTrack();
  const started = performance.now();
  let sent = 0;
  let phase = 0;
  const push = () => {
    const due = Math.floor((performance.now() - started) / 10) + 1;
    // After a stall, catch up a little but do not flood the encoder.
    for (let n = 0; sent < due && n < 10; n++, sent++) {
      const samples = new Int16Array(FRAME);
      for (let i = 0; i < FRAME; i++) {
        samples[i] = Math.round(amplitude * Math.sin(phase));
        phase += (2 * Math.PI * frequency) / SAMPLE_RATE;
      }
      phase %= 2 * Math.PI;
      source.onData({
        samples,
        sampleRate: SAMPLE_RATE,
        bitsPerSample: 16,
        channelCount: 1,
        numberOfFrames: FRAME,
      });
    }
  };
  const timer = setInterval(push, 10);
  push();
  return {
    track: track as unknown as MediaStreamTrack,
    rms: amplitude / Math.SQRT2,
    stop() {
      clearInterval(timer);
      track.stop();
    },
  };
}

export interface AudioTap {
  /** Frames received so far. */
  readonly frames: number;
  /** RMS over the frames since the last reset(), first channel only. */
  rms(): number;
  /**
   * The median of the per-frame RMS since the last reset(): the steady level, unmoved by the
   * odd concealed (faded) frame a loaded machine's jitter buffer produces.
   */
  medianFrameRms(): number;
  reset(): void;
  /** Resolves once `count` more frames whose RMS passes `accept` have arrived. */
  waitForFrames(count: number, accept?: (frameRms: number) => boolean, timeoutMs?: number): Promise<void>;
  stop(): void;
}

interface SinkFrame {
  samples: Int16Array;
  channelCount?: number;
}

/** Decoded audio of a received track, as the listener would hear it. */
export function audioTap(track: MediaStreamTrack): AudioTap {
  const tap = new Tap();
  tap.attach(track);
  return tap;
}

/**
 * The audio a Listener plays, whichever track that is: a reconnection (worker restart,
 * broadcaster back) gives the listener a new track, and the tap moves to it.
 */
export function listenerTap(
  listener: { on(event: 'track', handler: (track: MediaStreamTrack) => void): () => void },
  current?: MediaStreamTrack,
): AudioTap {
  const tap = new Tap();
  if (current) tap.attach(current);
  const off = listener.on('track', (track) => tap.attach(track));
  tap.onStop = off;
  return tap;
}

class Tap implements AudioTap {
  frames = 0;
  onStop: (() => void) | undefined;
  #sink: InstanceType<typeof wrtc.nonstandard.RTCAudioSink> | undefined;
  #sum = 0;
  #count = 0;
  #frameRms: number[] = [];
  readonly #waiters = new Set<(frameRms: number) => void>();

  attach(track: MediaStreamTrack): void {
    this.#sink?.stop();
    const sink = new wrtc.nonstandard.RTCAudioSink(track);
    this.#sink = sink;
    sink.ondata = (event: SinkFrame) => {
      if (this.#sink !== sink) return;
      const channels = event.channelCount ?? 1;
      let frameSum = 0;
      let frameCount = 0;
      for (let i = 0; i < event.samples.length; i += channels) {
        const value = event.samples[i] ?? 0;
        frameSum += value * value;
        frameCount++;
      }
      this.frames++;
      this.#sum += frameSum;
      this.#count += frameCount;
      const frameRms = Math.sqrt(frameSum / Math.max(frameCount, 1));
      if (this.#frameRms.length < 100_000) this.#frameRms.push(frameRms);
      for (const waiter of [...this.#waiters]) waiter(frameRms);
    };
  }

  rms(): number {
    return Math.sqrt(this.#sum / Math.max(this.#count, 1));
  }

  medianFrameRms(): number {
    const sorted = [...this.#frameRms].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)] ?? 0;
  }

  reset(): void {
    this.#sum = 0;
    this.#count = 0;
    this.#frameRms = [];
  }

  waitForFrames(
    wanted: number,
    accept: (frameRms: number) => boolean = () => true,
    timeoutMs = 15_000,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      let seen = 0;
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`only ${seen} of ${wanted} accepted audio frames arrived within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (frameRms: number) => {
        if (!accept(frameRms)) return;
        seen++;
        if (seen < wanted) return;
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        resolve();
      };
      this.#waiters.add(waiter);
    });
  }

  stop(): void {
    this.onStop?.();
    this.#sink?.stop();
    this.#sink = undefined;
  }
}
