/**
 * Audio with landmarks: a quiet tone with a loud click every `intervalMs` (the "mouth"), and a
 * detector on decoded audio that timestamps each click's onset (the "ear"). Both use
 * CLOCK_MONOTONIC (process.hrtime), shared by every process on the machine, so the publisher and
 * the listeners may run in different processes.
 */
import wrtc from '@roamhq/wrtc';

const SAMPLE_RATE = 48_000;
const FRAME = SAMPLE_RATE / 100; // 10 ms, what RTCAudioSource expects
const TONE_AMPLITUDE = 0.1 * 32767;
const CLICK_AMPLITUDE = 0.8 * 32767;
/** Well above the tone's peak, well below the click's, after Opus has had its way with both. */
const THRESHOLD = 0.35 * 32767;

export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export interface ClickSource {
  track: MediaStreamTrack;
  /** Monotonic ms at which each click's first sample was handed to WebRTC. */
  readonly clicks: number[];
  stop(): void;
}

/** A 440 Hz tone with a 20 ms 1 kHz burst every `intervalMs`, in 10 ms frames paced by the clock. */
export function clickSource(options: { intervalMs: number }): ClickSource {
  const source = new wrtc.nonstandard.RTCAudioSource();
  const track = source.createTrack();
  const framesPerInterval = Math.max(2, Math.round(options.intervalMs / 10));
  const clicks: number[] = [];
  const started = performance.now();
  let sent = 0;
  let phase = 0;
  let clickPhase = 0;
  const push = () => {
    const due = Math.floor((performance.now() - started) / 10) + 1;
    for (let n = 0; sent < due && n < 10; n++, sent++) {
      const samples = new Int16Array(FRAME);
      const position = sent % framesPerInterval;
      const click = position < 2;
      for (let i = 0; i < FRAME; i++) {
        let value = TONE_AMPLITUDE * Math.sin(phase);
        phase += (2 * Math.PI * 440) / SAMPLE_RATE;
        if (click) {
          value = CLICK_AMPLITUDE * Math.sin(clickPhase);
          clickPhase += (2 * Math.PI * 1000) / SAMPLE_RATE;
        }
        samples[i] = Math.round(value);
      }
      phase %= 2 * Math.PI;
      // A frame pushed late (timer jitter) still starts its click now: record when it really left.
      if (position === 0 && sent > 0) clicks.push(nowMs());
      source.onData({
        samples,
        sampleRate: SAMPLE_RATE,
        bitsPerSample: 16,
        channelCount: 1,
        numberOfFrames: FRAME,
      });
    }
  };
  const timer = setInterval(push, 5);
  push();
  return {
    track: track as unknown as MediaStreamTrack,
    clicks,
    stop() {
      clearInterval(timer);
      track.stop();
    },
  };
}

export interface ClickDetector {
  /** Monotonic ms of each detected click onset. */
  readonly onsets: number[];
  readonly frames: number;
  stop(): void;
}

interface SinkFrame {
  samples: Int16Array;
  sampleRate?: number;
  channelCount?: number;
}

/**
 * Timestamps click onsets in a received track as the listener's audio pipeline hands out
 * decoded frames (after the jitter buffer): the frame's delivery time plus the onset's offset
 * inside it. One detection per click: after an onset the detector waits `refractoryMs`.
 */
export function clickDetector(track: MediaStreamTrack, options: { refractoryMs: number }): ClickDetector {
  const sink = new wrtc.nonstandard.RTCAudioSink(track as never);
  const onsets: number[] = [];
  let frames = 0;
  let quietUntil = 0;
  sink.ondata = (event: SinkFrame) => {
    const now = nowMs();
    frames++;
    if (now < quietUntil) return;
    const channels = event.channelCount ?? 1;
    const rate = event.sampleRate ?? SAMPLE_RATE;
    const samples = event.samples;
    for (let i = 0; i < samples.length; i += channels) {
      if (Math.abs(samples[i] ?? 0) > THRESHOLD) {
        onsets.push(now + (i / channels / rate) * 1000);
        quietUntil = now + options.refractoryMs;
        return;
      }
    }
  };
  return {
    onsets,
    get frames() {
      return frames;
    },
    stop: () => sink.stop(),
  };
}

/** Pairs each onset with the latest click before it (within one interval): the mouth-to-ear delays in ms. */
export function matchClicks(
  clicks: readonly number[],
  onsets: readonly number[],
  intervalMs: number,
): number[] {
  const delays: number[] = [];
  let c = 0;
  for (const onset of onsets) {
    while (c + 1 < clicks.length && (clicks[c + 1] ?? Number.POSITIVE_INFINITY) <= onset) c++;
    const click = clicks[c];
    if (click !== undefined && click <= onset && onset - click < intervalMs) delays.push(onset - click);
  }
  return delays;
}
