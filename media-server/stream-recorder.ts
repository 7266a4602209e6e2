/**
 * The recorder of one stream on this media node: a recorder session (one ffmpeg) per producer the
 * broadcaster opens here. A session whose ffmpeg dies while the producer lives is restarted; the
 * audio missed meanwhile is a gap in the segments' wall-clock times, which the join fills with
 * silence of its real length. A producer that closes (the broadcaster left, the worker died, the
 * stream moved) stops its session cleanly; the next producer, here or on another node, writes on
 * under the same prefix, so the recording continues.
 */
import type { types as ms } from 'mediasoup';
import type { Logger } from '../common/index.js';
import type { BlobStorage } from '../common/ports/index.js';
import { RecorderSession } from './recorder-session.js';
import type { RecordingMetrics } from './recording-metrics.js';

export interface StreamRecorderOptions {
  streamId: string;
  nodeId: string;
  blobs: BlobStorage;
  segmentSeconds: number;
  log: Logger;
  metrics: RecordingMetrics;
}

interface Recording {
  producer: ms.Producer;
  session: RecorderSession;
  done: Promise<void>;
  /** Set when it is being stopped: a death then is not restarted. */
  stopping: boolean;
}

/** Restarts back off so an ffmpeg that cannot run at all does not spin. */
const RESTART_DELAYS_MS = [0, 250, 1000, 5000];

export class StreamRecorder {
  readonly #options: StreamRecorderOptions;
  #current: Recording | undefined;
  #sessions = 0;
  #closed = false;

  constructor(options: StreamRecorderOptions) {
    this.#options = options;
  }

  /** The running session (tests kill its ffmpeg). */
  get session(): RecorderSession | undefined {
    return this.#current?.session;
  }

  /** Records `producer` (the broadcaster's, on `router`), replacing the recording of a previous one. */
  async attach(router: ms.Router, producer: ms.Producer): Promise<void> {
    if (this.#closed || producer.closed) return;
    await this.#stopCurrent();
    if (this.#closed || producer.closed) return;
    this.#options.metrics.recorderStarted();
    const session = this.#start(router, producer);
    const current: Recording = { producer, session, done: Promise.resolve(), stopping: false };
    current.done = this.#supervise(router, current);
    this.#current = current;
    this.#options.log.info({ producerId: producer.id }, 'recording started');
  }

  /** Stops recording `producerId` (it closed); nothing when another producer is recorded now. */
  async detach(producerId: string): Promise<void> {
    if (this.#current?.producer.id === producerId) await this.#stopCurrent();
  }

  /** Stops for good; resolves once the last segment is uploaded. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#stopCurrent();
  }

  #start(router: ms.Router, producer: ms.Producer): RecorderSession {
    this.#sessions += 1;
    const { streamId, nodeId, blobs, segmentSeconds, log, metrics } = this.#options;
    return RecorderSession.start({
      streamId,
      router,
      producer,
      blobs,
      segmentSeconds,
      writer: `${nodeId}.${Date.now().toString(36)}.${this.#sessions}`,
      log,
      metrics,
    });
  }

  /** Restarts the session each time its ffmpeg dies, as long as the producer lives. */
  async #supervise(router: ms.Router, current: Recording): Promise<void> {
    const { log, metrics } = this.#options;
    let failures = 0;
    try {
      for (;;) {
        const session = current.session;
        const end = await session.ended;
        const over = () => current.stopping || this.#closed || current.producer.closed || router.closed;
        if (end.cause === 'stopped' || over()) return;
        const delay = RESTART_DELAYS_MS[Math.min(failures, RESTART_DELAYS_MS.length - 1)] ?? 0;
        failures += 1;
        metrics.restarted();
        const lastEnd = session.lastSegmentEndMs;
        log.warn(
          {
            error: end.error,
            restartInMs: delay,
            gapFrom: lastEnd === undefined ? null : new Date(lastEnd).toISOString(),
          },
          'recorder died: restarting it; the audio it missed is recorded as silence of its length',
        );
        if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
        if (over()) return;
        current.session = this.#start(router, current.producer);
        // A session that recorded a segment ran well: the next death restarts at once again.
        void current.session.ended.then(() => {
          if (current.session.lastSegmentEndMs !== undefined) failures = 0;
        });
      }
    } finally {
      metrics.recorderStopped();
    }
  }

  async #stopCurrent(): Promise<void> {
    const current = this.#current;
    if (!current) return;
    this.#current = undefined;
    current.stopping = true;
    // The supervisor may swap sessions while we wait: stop whichever runs until it settles.
    let stopped: RecorderSession | undefined;
    while (stopped !== current.session) {
      stopped = current.session;
      await stopped.stop();
    }
    await current.done;
    this.#options.log.info({ producerId: current.producer.id }, 'recording stopped');
  }
}
