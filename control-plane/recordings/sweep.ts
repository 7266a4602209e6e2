/**
 * The replay sweep: the join of a recorded stream is queued when its `stream.ended` is handled,
 * best effort (the bus drops an event nobody heard; the queue may refuse the job after the replay
 * track's transaction committed; the control plane may die in between). Every interval, the
 * sweep takes the recorded streams that ended more than the grace period ago and are still
 * 'recording' (the event was never handled: it does what the handler would have) or
 * 'processing' without their join queued (it queues it), so every recorded stream gets its
 * replay (or its no-audio outcome) in the end.
 *
 * Exactly once, with several control planes sweeping: the move out of 'recording' is a
 * conditional update that one of them wins, and the job's id names the stream, so an enqueue of
 * a job the queue already holds adds nothing (and is not counted as a re-queue).
 */
import { counter, type Logger } from '../../common/index.js';
import { unjoinedRecordings } from '../streams/index.js';
import { beginReplay, type RecordingLifecycleDeps, resumeReplay } from './lifecycle.js';

const requeues = counter(
  'veza_recording_requeues_total',
  'Recording joins the replay sweep queued: event_missed (stream.ended never handled), job_missing (the replay track existed, its job was never queued)',
  ['reason'],
);

/** Streams one sweep takes at most; the next sweep takes the rest. */
const SWEEP_BATCH = 100;

export interface ReplaySweepOptions {
  /** Between two sweeps; 0: no timer, runOnce() only. */
  intervalMs: number;
  /** How long after its end a stream is left to the event's handler. */
  graceMs: number;
}

export interface ReplaySweep {
  /** One sweep now; resolves with the joins it queued. */
  runOnce(): Promise<{ eventMissed: number; jobMissing: number }>;
  stop(): Promise<void>;
}

export function startReplaySweep(deps: RecordingLifecycleDeps, options: ReplaySweepOptions): ReplaySweep {
  const log: Logger = deps.log.child({ component: 'replay-sweep' });
  let stopped = false;
  let running: Promise<{ eventMissed: number; jobMissing: number }> | null = null;
  let timer: NodeJS.Timeout | undefined;

  async function sweep(): Promise<{ eventMissed: number; jobMissing: number }> {
    const found = { eventMissed: 0, jobMissing: 0 };
    const streams = await unjoinedRecordings(deps.sql, new Date(Date.now() - options.graceMs), SWEEP_BATCH);
    for (const stream of streams) {
      if (stopped) break;
      try {
        if (stream.recording_status === 'recording') {
          if ((await beginReplay(deps, stream.id)) === null) continue;
          found.eventMissed += 1;
          requeues.inc({ reason: 'event_missed' });
          log.warn({ streamId: stream.id }, 'a recorded stream ended unnoticed: its join is queued now');
        } else if (await resumeReplay(deps, stream.id)) {
          found.jobMissing += 1;
          requeues.inc({ reason: 'job_missing' });
          log.warn({ streamId: stream.id }, 'the join of a recorded stream was never queued: queued now');
        }
      } catch (error) {
        log.error({ err: error, streamId: stream.id }, 'could not queue the join of a recorded stream');
      }
    }
    return found;
  }

  function runOnce(): Promise<{ eventMissed: number; jobMissing: number }> {
    if (running) return running;
    const run = sweep().finally(() => {
      running = null;
    });
    running = run;
    return run;
  }

  const schedule = () => {
    if (stopped) return;
    // Jitter: control planes started together do not sweep together.
    timer = setTimeout(
      () => {
        void runOnce()
          .catch((error: unknown) => log.error({ err: error }, 'replay sweep failed'))
          .finally(schedule);
      },
      options.intervalMs * (1 - 0.1 * Math.random()),
    );
    timer.unref();
  };
  if (options.intervalMs > 0) schedule();

  return {
    runOnce,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running?.catch(() => undefined);
    },
  };
}
