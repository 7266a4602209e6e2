/**
 * The live loop of the streaming rpcs (StreamAnalytics, StreamMetrics): one write at once, then
 * one per interval while the stream is live; the call ends when the stream ends (its
 * `stream.ended` wakes the loop at once), the client cancels, or the server shuts down.
 */
import { STREAM_ENDED, streamEndedEventSchema } from '../../common/contracts/index.js';
import type { EventBus } from '../../common/ports/index.js';

export const DEFAULT_INTERVAL_S = 5;
export const MAX_INTERVAL_S = 300;

export async function whileLive(options: {
  bus: EventBus;
  streamId: number;
  intervalMs: number;
  signal: AbortSignal;
  /** Writes one update; returns whether the stream is still live. */
  tick: () => Promise<boolean>;
}): Promise<void> {
  const { bus, streamId, intervalMs, signal } = options;
  let ended = false;
  let wake: () => void = () => {};
  const subscription = bus.subscribe(STREAM_ENDED, (payload) => {
    const parsed = streamEndedEventSchema.safeParse(payload);
    if (parsed.success && parsed.data.stream_id === streamId) {
      ended = true;
      wake();
    }
  });
  const onAbort = () => wake();
  signal.addEventListener('abort', onAbort);
  try {
    await subscription.ready;
    for (;;) {
      if (signal.aborted) return;
      const live = await options.tick();
      // An end heard during the wait gets this last write, with the final figures.
      if (!live || ended || signal.aborted) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, intervalMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    subscription.unsubscribe();
  }
}
