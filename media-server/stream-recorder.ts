/**
 * The recorder of one stream on this media node: one recorder session (one ffmpeg) per producer the
 * broadcaster opens here, taken from the node's spare (ffmpeg already spawned and bound), so the
 * recording starts with the producer's first packet and a restart loses little. A session whose ffmpeg
 * dies while its producer lives is replaced at once; the audio missed meanwhile is a gap in the
 * segments' wall-clock times, which the join fills with silence of its real length. A producer
 * here or on another node (a failover) writes on under the same prefix: the recording continues.
 */
import type { types as ms } from 'mediasoup';
import type { Logger } from '../common/index.js';
import type { RecorderSession } from './recorder-session.js';
import type { RecordingMetrics } from './recording-metrics.js';

export interface StreamRecorderOptions {
  streamId: string;
  nodeId: string;
  /** The node's spare session (ready ffmpeg); the node makes the next spare. */
  takeSpare: () => RecorderSession;
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

  /** The session recording now (tests kill its ffmpeg). */
  get session(): RecorderSession | undefined {
    return this.#current?.session;
  }

  /** Records `producer` (the broadcaster's, on `router`), replacing the recording of a previous one. */
  async attach(router: ms.Router, producer: ms.Producer): Promise<void> {
    if (this.#closed || producer.closed) return;
    await this.#stopCurrent();
    if (this.#closed || producer.closed) return;
    const session = this.#start(router, producer);
    this.#options.metrics.recorderStarted();
    const current: Recording = { producer, session, done: Promise.resolve(), stopping: false };
    current.done = this.#supervise(router, current);
    this.#current = current;
    this.#options.log.info({ producerId: producer.id }, 'recording started');
  }

  /** Stops recording `producerId` (it closed). */
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
    const { streamId, nodeId, log } = this.#options;
    const session = this.#options.takeSpare();
    session.feed({
      streamId,
      router,
      producer,
      writer: `${nodeId}.${Date.now().toString(36)}.${this.#sessions}`,
      log,
    });
    return session;
  }

  /** Replaces the session each time its ffmpeg dies, as long as the producer lives. */
  async #supervise(router: ms.Router, current: Recording): Promise<void> {
    const { log, metrics } = this.#options;
    let failures = 0;
    const over = () => current.stopping || this.#closed || current.producer.closed || router.closed;
    try {
      for (;;) {
        const session = current.session;
        const end = await session.ended;
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
        const next = current.session;
        // A session that recorded a segment ran well: the next death restarts at once again.
        void next.ended.then(() => {
          if (next.lastSegmentEndMs !== undefined) failures = 0;
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
