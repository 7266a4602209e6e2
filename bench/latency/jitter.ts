/** The receiver's own view of its jitter buffer (getStats inbound-rtp), as a browser reports it. */

export interface JitterReading {
  /** Cumulative seconds samples spent in the jitter buffer. */
  delayS: number;
  emitted: number;
}

interface StatsLike {
  forEach(callback: (value: Record<string, unknown>) => void): void;
}

export function jitterReading(report: StatsLike): JitterReading | null {
  let reading: JitterReading | null = null;
  report.forEach((stat) => {
    if (stat.type !== 'inbound-rtp') return;
    const delay = stat.jitterBufferDelay;
    const emitted = stat.jitterBufferEmittedCount;
    if (typeof delay === 'number' && typeof emitted === 'number') reading = { delayS: delay, emitted };
  });
  return reading;
}

/** Average jitter-buffer delay (ms) between two readings; null when nothing was emitted. */
export function jitterDelayMs(from: JitterReading | null, to: JitterReading | null): number | null {
  if (!to) return null;
  const emitted = to.emitted - (from?.emitted ?? 0);
  return emitted > 0 ? (1000 * (to.delayS - (from?.delayS ?? 0))) / emitted : null;
}
