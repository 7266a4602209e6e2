/**
 * The latency scenario: glass-to-glass through the real codec. A @roamhq/wrtc broadcaster (the
 * real client library) sends a tone with a click every `intervalMs`; listeners decode it and
 * timestamp each click; mouth-to-ear is onset minus emission, on the shared monotonic clock.
 * Baseline: the same source and detector over a direct wrtc call, no SFU.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { ChildRpc } from '../lib/ipc.js';
import type { Progress } from '../lib/progress.js';
import { createUser, signalingWsUrl, startStream, stopStream } from '../lib/rest.js';
import { ratio, type ScenarioOutput } from '../lib/results.js';
import { type CdfPoints, cdfOf, type PercentilesWithMax, round, summarize } from '../lib/stats.js';
import { openPlatform, type PlatformTarget, type TargetOptions } from '../lib/target.js';
import { matchClicks } from './audio.js';

const PUBLISHER = new URL('./publisher.ts', import.meta.url);
const LISTENERS = new URL('./listeners.ts', import.meta.url);
const P2P = new URL('../baselines/p2p-wrtc.ts', import.meta.url);

export interface LatencyOptions {
  listeners: number;
  durationS: number;
  intervalMs: number;
  baseline: boolean;
  target: TargetOptions;
}

export interface LatencyStep {
  listeners: number;
  joined: number;
  mouth_to_ear_ms: PercentilesWithMax;
  /** Mean jitter-buffer delay the listeners' receivers report (getStats), over the window. */
  jitter_buffer_ms: { mean: number | null; max: number | null };
  clicks_sent: number;
  /** Detected clicks / (clicks sent x listeners). */
  clicks_detected_pct: number;
  cdf: { mouth_to_ear_ms: CdfPoints };
}

const empty = z.object({});
const collected = z.object({
  clicks: z.array(z.number()).optional(),
  listeners: z.array(z.object({ onsets: z.array(z.number()), frames: z.number() })),
  /** One value per receiving peer connection. */
  jitterBufferMs: z.array(z.number()),
});

function step(
  listeners: number,
  clicks: number[],
  collection: z.infer<typeof collected>,
  intervalMs: number,
  windowS: number,
): LatencyStep {
  const ears = collection.listeners;
  const delays = ears.flatMap((ear) => matchClicks(clicks, ear.onsets, intervalMs));
  const jitter = collection.jitterBufferMs;
  const clicksInWindow = Math.round((windowS * 1000) / intervalMs);
  return {
    listeners,
    joined: ears.length,
    mouth_to_ear_ms: summarize(delays),
    jitter_buffer_ms: {
      mean: jitter.length > 0 ? round(jitter.reduce((a, b) => a + b, 0) / jitter.length, 2) : null,
      max: jitter.length > 0 ? round(Math.max(...jitter), 2) : null,
    },
    clicks_sent: clicksInWindow,
    clicks_detected_pct: round(
      (100 * delays.length) / Math.max(1, clicksInWindow * Math.max(1, ears.length)),
      1,
    ),
    cdf: { mouth_to_ear_ms: cdfOf(delays) },
  };
}

/** A running measurement: its window opens and closes when the scenario says, so two can overlap. */
interface Session {
  window(): Promise<void>;
  collect(): Promise<LatencyStep>;
  close(): Promise<void>;
}

const clicksSchema = z.object({ clicks: z.array(z.number()) });

async function platformSession(
  options: LatencyOptions,
  target: PlatformTarget,
  progress: Progress,
): Promise<Session> {
  const children: ChildRpc[] = [];
  const close = async () => {
    for (const child of children.reverse()) await child.close();
  };
  try {
    const owner = await createUser(target.baseUrl, 'latency');
    const { streamId } = await startStream(target.baseUrl, owner, 'latency benchmark');
    const url = signalingWsUrl(target.baseUrl);
    const publisher = new ChildRpc(PUBLISHER, [], { onOutput: (line) => progress.child('publisher', line) });
    children.push(publisher);
    await publisher.request(
      'publish',
      { url, token: owner.accessToken, streamId, intervalMs: options.intervalMs },
      empty,
    );
    progress.note(
      `platform: publishing clicks every ${options.intervalMs} ms; ${options.listeners} listener(s) joining`,
    );
    const listeners = new ChildRpc(LISTENERS, [], { onOutput: (line) => progress.child('listeners', line) });
    children.push(listeners);
    await listeners.request(
      'listen',
      {
        url,
        streamId,
        count: options.listeners,
        refractoryMs: options.intervalMs / 2,
      },
      z.object({ listening: z.number() }),
    );
    let clicksBefore = 0;
    return {
      async window() {
        clicksBefore = (await publisher.request('clicks', {}, clicksSchema)).clicks.length;
        await listeners.request('window', {}, empty);
      },
      async collect() {
        const ears = await listeners.request('collect', {}, collected);
        const { clicks } = await publisher.request('clicks', {}, clicksSchema);
        await stopStream(target.baseUrl, owner, streamId).catch(() => undefined);
        const window = clicks.slice(Math.max(0, clicksBefore - 1));
        return step(options.listeners, window, ears, options.intervalMs, options.durationS);
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

async function p2pSession(options: LatencyOptions, progress: Progress): Promise<Session> {
  const p2p = new ChildRpc(P2P, [], { onOutput: (line) => progress.child('p2p', line) });
  try {
    await p2p.request(
      'start',
      { intervalMs: options.intervalMs, refractoryMs: options.intervalMs / 2 },
      empty,
    );
  } catch (error) {
    await p2p.close();
    throw error;
  }
  return {
    window: async () => {
      await p2p.request('window', {}, empty);
    },
    async collect() {
      const result = await p2p.request('collect', {}, collected);
      return step(1, result.clicks ?? [], result, options.intervalMs, options.durationS);
    },
    close: () => p2p.close(),
  };
}

/**
 * The platform and the baseline are measured over the same window: both are light, and on a
 * shared machine they then see the same noise (a jitter buffer grows with the jitter it sees).
 */
async function measure(
  options: LatencyOptions,
  progress: Progress,
): Promise<{ measured: LatencyStep; bare: LatencyStep | null; settings: Record<string, unknown> }> {
  const target = await openPlatform(options.target, progress);
  const sessions: Session[] = [];
  try {
    const platform = await platformSession(options, target, progress);
    sessions.push(platform);
    let bare: Session | null = null;
    if (options.baseline) {
      progress.note('baseline: a direct wrtc call (no SFU), measured over the same window');
      bare = await p2pSession(options, progress);
      sessions.push(bare);
    }
    await sleep(WARMUP_MS);
    await Promise.all(sessions.map((session) => session.window()));
    progress.note(`measuring for ${options.durationS} s`);
    await sleep(options.durationS * 1000);
    const [measured, baseline] = await Promise.all([platform.collect(), bare?.collect() ?? null]);
    if (!measured) throw new Error('no platform measurement');
    return { measured, bare: baseline ?? null, settings: target.settings };
  } finally {
    for (const session of sessions.reverse()) await session.close();
    await target.close();
  }
}

/** Lets the receivers' jitter buffers settle before the window opens. */
const WARMUP_MS = 3000;

export async function latencyScenario(options: LatencyOptions, progress: Progress): Promise<ScenarioOutput> {
  const { measured, bare, settings } = await measure(options, progress);
  progress.note(
    `platform: mouth-to-ear p50 ${measured.mouth_to_ear_ms.p50} ms, p95 ${measured.mouth_to_ear_ms.p95} ms, jitter buffer ${measured.jitter_buffer_ms.mean} ms`,
  );
  if (bare) {
    progress.note(
      `baseline: mouth-to-ear p50 ${bare.mouth_to_ear_ms.p50} ms, p95 ${bare.mouth_to_ear_ms.p95} ms, jitter buffer ${bare.jitter_buffer_ms.mean} ms`,
    );
  }
  return {
    measured: `Glass-to-glass: a tone with a click every ${options.intervalMs} ms from a @roamhq/wrtc broadcaster (signaling/client Broadcaster, Opus) through the platform's SFU to ${options.listeners} wrtc listener(s) (signaling/client Listener), which decode it (RTCAudioSink) and timestamp each click's onset; baseline: the same over a direct wrtc call without the SFU.`,
    options: {
      listeners: options.listeners,
      click_interval_ms: options.intervalMs,
      url: options.target.url ?? null,
      platform: settings,
    },
    steps: [measured],
    baseline: bare
      ? {
          system: 'p2p-wrtc',
          description:
            'The same click source and detector over a direct @roamhq/wrtc peer connection on loopback: same codec and jitter buffer, no SFU, no signaling server. Measured over the same window as the platform, so both see the same machine noise.',
          steps: [bare],
          ratios: [
            {
              listeners: measured.listeners,
              mouth_to_ear_p50: ratio(measured.mouth_to_ear_ms.p50, bare.mouth_to_ear_ms.p50),
              mouth_to_ear_p95: ratio(measured.mouth_to_ear_ms.p95, bare.mouth_to_ear_ms.p95),
              jitter_buffer: ratio(measured.jitter_buffer_ms.mean, bare.jitter_buffer_ms.mean),
            },
          ],
        }
      : null,
    targets: [
      {
        name: 'glass-to-glass p95 (ms)',
        target: '< 150 ms',
        value: Number.isFinite(measured.mouth_to_ear_ms.p95) ? measured.mouth_to_ear_ms.p95 : null,
        met: Number.isFinite(measured.mouth_to_ear_ms.p95) ? measured.mouth_to_ear_ms.p95 < 150 : null,
      },
    ],
    notes: [
      "Onsets are timestamped when RTCAudioSink hands out a decoded 10 ms frame, plus the onset's offset inside it: a resolution of about 10 ms.",
      "Emission is when the click's first frame is handed to RTCAudioSource; a real microphone adds its own capture buffer on top.",
    ],
    charts: [
      {
        title: 'Mouth-to-ear CDF',
        xLabel: 'ms',
        yLabel: 'fraction of clicks',
        yRange: [0, 1],
        series: [
          { name: `platform (${measured.listeners} listeners)`, points: measured.cdf.mouth_to_ear_ms },
          ...(bare ? [{ name: 'p2p-wrtc (no SFU)', dashed: true, points: bare.cdf.mouth_to_ear_ms }] : []),
        ],
      },
    ],
  };
}
