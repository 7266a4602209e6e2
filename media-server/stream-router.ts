/**
 * One of a stream's Routers: the origin (where the broadcaster produces) or a fan-out router on another
 * worker, fed from the origin by pipeToRouter. It counts the listeners placed on it, which is what the
 * consumer budget is compared with: a listener is counted from placement (its recv transport), before
 * its consumer exists, so concurrent joins cannot all squeeze under the budget.
 */
import type { types as ms } from 'mediasoup';
import { UnavailableError } from '../common/contracts/index.js';
import type { PooledWorker } from './pooled-worker.js';

export type StreamRouterRole = 'origin' | 'fanout';

export class StreamRouter {
  readonly router: ms.Router;
  readonly role: StreamRouterRole;
  readonly worker: PooledWorker;
  /** The origin's AudioLevelObserver (the broadcaster's meter and speaking indicator). */
  levels: ms.AudioLevelObserver | undefined;
  /** Recv transports placed here and not closed. */
  listeners = 0;
  /** producer id -> the pipe that brings it here (fan-out routers only). */
  readonly #pipes = new Map<string, Promise<void>>();

  constructor(router: ms.Router, role: StreamRouterRole, worker: PooledWorker) {
    this.router = router;
    this.role = role;
    this.worker = worker;
  }

  get workerIndex(): number {
    return this.worker.index;
  }

  get closed(): boolean {
    return this.router.closed;
  }

  /** Makes `producer` (living in `origin`) consumable here; idempotent while that pipe lives. */
  pipeFrom(origin: StreamRouter, producer: ms.Producer): Promise<void> {
    if (origin === this) return Promise.resolve();
    let pipe = this.#pipes.get(producer.id);
    if (!pipe) {
      pipe = origin.router.pipeToRouter({ producerId: producer.id, router: this.router }).then(
        ({ pipeProducer }) => {
          pipeProducer?.observer.once('close', () => this.#pipes.delete(producer.id));
        },
        (error: unknown) => {
          this.#pipes.delete(producer.id);
          throw new UnavailableError(`could not bring the stream's audio to worker ${this.workerIndex}`, {
            cause: error,
          });
        },
      );
      this.#pipes.set(producer.id, pipe);
    }
    return pipe;
  }

  close(): void {
    this.router.close();
  }
}
