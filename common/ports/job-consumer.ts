/**
 * The consumer loop shared by both JobQueue adapters, so concurrency, backoff, dead-lettering,
 * lease renewal and shutdown behave identically; an adapter only says how to take one job
 * and what ack, retry, release and dead-letter mean in its store.
 */
import type { Logger } from '../log.js';
import {
  backoffFor,
  type ConsumeOptions,
  errorMessage,
  type JobConsumer,
  type JobHandler,
  UnrecoverableJobError,
} from './job-queue.js';

/** One delivery of a job, owned by this consumer until settled or its lease is lost. */
export interface Delivery {
  readonly jobId: string;
  readonly payload: unknown;
  /** 1-based; counts every delivery, including ones released at shutdown or lost with a consumer. */
  readonly attempt: number;
  /** Why the previous delivery failed, when the store remembers it. */
  readonly lastError: string | null;
  ack(): Promise<void>;
  retry(delayMs: number, reason: string): Promise<void>;
  /** Makes the job available again at once. */
  release(): Promise<void>;
  deadLetter(reason: string): Promise<void>;
  /** Extends the lease; false when it is already lost (another consumer may hold the job). */
  renew(): Promise<boolean>;
}

export interface DeliverySource {
  /**
   * Waits for one job and takes it. Resolves null when `signal` aborts or when nothing came
   * for a while (the caller simply asks again).
   */
  next(signal: AbortSignal): Promise<Delivery | null>;
  /** How often a running job's lease is renewed. */
  readonly renewEveryMs: number;
}

class JobReleasedError extends Error {
  override readonly name = 'JobReleasedError';
}

interface Running {
  delivery: Delivery;
  controller: AbortController;
  /** Set once the handler returned and its outcome is being recorded: too late to release. */
  finishing: boolean;
  released: boolean;
  /** Resolves when the job is acked, nacked, dead-lettered or released. */
  settled: Promise<void>;
  settle: () => void;
  /** Lets the slot move on without waiting for the handler (stop without drain). */
  abandon: () => void;
}

/** How long a slot waits before asking again after the store failed. */
const ERROR_PAUSE_MS = 1_000;

export class ConsumerLoop implements JobConsumer {
  private readonly running = new Set<Running>();
  private readonly stopController = new AbortController();
  private readonly slots: Promise<void>[];
  private stopping = false;

  constructor(
    private readonly source: DeliverySource,
    private readonly handler: JobHandler,
    private readonly options: ConsumeOptions,
    private readonly log: Logger,
  ) {
    // One pull per free slot: a slot asks for a job only when it can run it, so this
    // consumer never holds more than `concurrency` jobs and a finished job's slot refills at once.
    this.slots = Array.from({ length: options.concurrency }, () => this.slot());
  }

  async stop({ drain }: { drain: boolean }): Promise<void> {
    this.stopping = true;
    this.stopController.abort();
    const releasing = drain ? [] : [...this.running].filter((running) => this.abandon(running));
    // The releases wait for every slot to stop pulling: otherwise a slot of this very consumer
    // could take a released job straight back, only to release it again (a wasted delivery).
    await Promise.all(this.slots);
    await Promise.all(
      releasing.map(async (running) => {
        await this.record(running.delivery, 'release', () => running.delivery.release());
        running.settle();
      }),
    );
    await Promise.all([...this.running].map((running) => running.settled));
  }

  private async slot(): Promise<void> {
    const signal = this.stopController.signal;
    while (!this.stopping) {
      let delivery: Delivery | null;
      try {
        delivery = await this.source.next(signal);
      } catch (error) {
        if (this.stopping) break;
        this.log.error({ err: error }, 'job queue: taking a job failed');
        await pause(ERROR_PAUSE_MS, signal);
        continue;
      }
      if (!delivery) continue;
      if (this.stopping) {
        // Taken while stopping: hand it straight back rather than wait for its lease to expire.
        await this.record(delivery, 'release', () => delivery.release());
        break;
      }
      await this.run(delivery);
    }
  }

  private async run(delivery: Delivery): Promise<void> {
    const { maxDeliveries, backoffMs } = this.options;
    if (delivery.attempt > maxDeliveries) {
      // Its last delivery died with its consumer, so no handler ever reported a failure.
      const previous = delivery.lastError ? `; the failure before it: ${delivery.lastError}` : '';
      const reason = `abandoned: delivery ${delivery.attempt - 1} ended without an acknowledgement (its consumer stopped or died)${previous}`;
      await this.record(delivery, 'dead-letter', () => delivery.deadLetter(reason));
      return;
    }

    let settle = () => {};
    const settled = new Promise<void>((resolve) => {
      settle = resolve;
    });
    let abandon = () => {};
    const abandoned = new Promise<'abandoned'>((resolve) => {
      abandon = () => resolve('abandoned');
    });
    const running: Running = {
      delivery,
      controller: new AbortController(),
      finishing: false,
      released: false,
      settled,
      settle,
      abandon,
    };
    this.running.add(running);
    const renewal = setInterval(() => {
      delivery.renew().then(
        (owned) => {
          if (!owned && !running.finishing && !running.released) {
            // Someone else may run it now: nothing this handler does may count any more.
            running.released = true;
            running.controller.abort(new JobReleasedError(`job ${delivery.jobId}: lease lost`));
            running.settle();
          }
        },
        (error: unknown) =>
          this.log.warn({ err: error, jobId: delivery.jobId }, 'job queue: lease renewal failed'),
      );
    }, this.source.renewEveryMs);

    const context = {
      jobId: delivery.jobId,
      attempt: delivery.attempt,
      maxDeliveries,
      signal: running.controller.signal,
    };
    const outcome = Promise.resolve()
      .then(() => this.handler(delivery.payload, context))
      .then(
        () => ({ failed: false as const }),
        (error: unknown) => ({ failed: true as const, error }),
      );
    // A lease lost keeps the slot busy until the handler returns (it still uses the machine);
    // a stop without drain does not wait for it.
    const result = await Promise.race([outcome, abandoned]);
    clearInterval(renewal);
    if (result === 'abandoned') {
      // stop() releases the job; the entry goes once that is recorded.
      running.settled.then(() => this.running.delete(running));
      return;
    }
    if (!running.released) {
      running.finishing = true;
      if (!result.failed) {
        await this.record(delivery, 'ack', () => delivery.ack());
      } else {
        const reason = errorMessage(result.error);
        if (result.error instanceof UnrecoverableJobError || delivery.attempt >= maxDeliveries) {
          await this.record(delivery, 'dead-letter', () => delivery.deadLetter(reason));
        } else {
          this.log.warn(
            { jobId: delivery.jobId, attempt: delivery.attempt, reason },
            'job failed; will retry',
          );
          await this.record(delivery, 'retry', () =>
            delivery.retry(backoffFor(backoffMs, delivery.attempt), reason),
          );
        }
      }
      running.settle();
    }
    await running.settled;
    this.running.delete(running);
  }

  /**
   * Lets the slot move on without the handler (aborting it); true when the job still needs
   * releasing (false: already being settled, or its lease is already lost).
   */
  private abandon(running: Running): boolean {
    if (running.finishing) return false;
    running.abandon();
    if (running.released) return false;
    running.released = true;
    running.controller.abort(new JobReleasedError(`job ${running.delivery.jobId}: released at shutdown`));
    return true;
  }

  /** A failed ack/nack is logged, not thrown: the lease then expires and the job comes back. */
  private async record(delivery: Delivery, what: string, action: () => Promise<void>): Promise<void> {
    try {
      await action();
    } catch (error) {
      this.log.error({ err: error, jobId: delivery.jobId }, `job queue: ${what} failed`);
    }
  }
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

export { pause as abortablePause };
