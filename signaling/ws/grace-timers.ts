/**
 * The grace periods of streams whose broadcaster is gone, or has not come yet: one timer per
 * stream, which calls `expired` after `graceMs`. The timers only keep time; stream-liveness.ts
 * decides when one starts and what its expiry means.
 */
import type { Logger } from '../../common/index.js';

/** A stream under a grace period, and the media node that is asked at its end whether anyone produces. */
export interface GraceStream {
  streamId: number;
  mediaNodeId: string;
}

export interface GraceTimersOptions {
  graceMs: number;
  log: Logger;
  expired(stream: GraceStream): void;
}

interface GraceTimer {
  timer: ReturnType<typeof setTimeout>;
  stream: GraceStream;
}

export class GraceTimers {
  readonly #options: GraceTimersOptions;
  readonly #timers = new Map<number, GraceTimer>();

  constructor(options: GraceTimersOptions) {
    this.#options = options;
  }

  /** Starts the stream's grace period again from now; `message` says why, in the log. */
  start(stream: GraceStream, message: string): void {
    this.cancel(stream.streamId);
    // Its own copy: a move of the stream updates it (retarget).
    const own: GraceStream = { streamId: stream.streamId, mediaNodeId: stream.mediaNodeId };
    const timer = setTimeout(() => {
      this.#timers.delete(own.streamId);
      this.#options.expired(own);
    }, this.#options.graceMs);
    timer.unref?.();
    this.#timers.set(own.streamId, { timer, stream: own });
    this.#options.log.info({ streamId: own.streamId, graceMs: this.#options.graceMs }, message);
  }

  cancel(streamId: number): void {
    const entry = this.#timers.get(streamId);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.#timers.delete(streamId);
  }

  has(streamId: number): boolean {
    return this.#timers.has(streamId);
  }

  /** The stream moved to another media node: its expiry asks that one. */
  retarget(streamId: number, mediaNodeId: string): void {
    const entry = this.#timers.get(streamId);
    if (entry) entry.stream.mediaNodeId = mediaNodeId;
  }

  close(): void {
    for (const { timer } of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
  }
}
