/**
 * The pool of mediasoup Workers: one per core by default, each a separate process with its own event
 * loop, so one broadcast can use every core through pipeToRouter.
 *
 * A worker that dies is replaced at the same index. Whatever lived on it (routers, transports, producers,
 * consumers) died with it; the `recover` hook re-creates the streams' routers on the replacement, and
 * only then does the pool emit `workerReplaced`, so a client told to reconnect finds the stream ready.
 *
 * Close cascade: closing the pool closes every worker; mediasoup then closes their routers, which close
 * their transports, producers and consumers.
 */
import { EventEmitter } from 'node:events';
import type { types as ms } from 'mediasoup';
import { UnavailableError } from '../common/contracts/index.js';
import type { Logger } from '../common/index.js';
import type { Mediasoup } from './load-mediasoup.js';
import type { MediaMetrics } from './metrics.js';
import { PooledWorker } from './pooled-worker.js';

export interface WorkerDiedEvent {
  workerIndex: number;
  pid: number;
  error: string;
}

export interface WorkerReplacedEvent {
  oldWorkerIndex: number;
  oldPid: number;
  newPid: number;
  /** Streams that had a router on the dead worker; their routers have been re-created. */
  affectedStreamIds: string[];
}

export interface WorkerPoolEvents {
  workerDied: [WorkerDiedEvent];
  workerReplaced: [WorkerReplacedEvent];
}

export interface WorkerPoolOptions {
  mediasoup: Mediasoup;
  size: number;
  settings: ms.WorkerSettings;
  metrics: MediaMetrics;
  log: Logger;
  /** Re-creates what lived on the worker at `workerIndex` (now replaced) and returns the affected stream ids. */
  recover: (workerIndex: number) => Promise<string[]>;
}

const RESPAWN_BACKOFF_MS = [0, 100, 500, 1000, 2000, 5000];

export class WorkerPool extends EventEmitter<WorkerPoolEvents> {
  readonly #options: WorkerPoolOptions;
  /** Index -> worker; undefined while a dead worker is being replaced. */
  readonly #workers: (PooledWorker | undefined)[];
  #closed = false;

  private constructor(options: WorkerPoolOptions, workers: PooledWorker[]) {
    super();
    this.#options = options;
    this.#workers = workers;
    for (const worker of workers) this.#watch(worker);
    options.metrics.setWorkers(workers.length);
  }

  static async create(options: WorkerPoolOptions): Promise<WorkerPool> {
    const workers: PooledWorker[] = [];
    try {
      for (let index = 0; index < options.size; index++) {
        const worker = await options.mediasoup.createWorker(options.settings);
        workers.push(new PooledWorker(index, worker, options.metrics));
      }
    } catch (error) {
      for (const worker of workers) worker.close();
      throw new UnavailableError(`could not start mediasoup workers: ${String(error)}`, { cause: error });
    }
    options.log.info({ workerPids: workers.map((w) => w.pid) }, 'mediasoup workers started');
    return new WorkerPool(options, workers);
  }

  get size(): number {
    return this.#workers.length;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Live workers, in index order (a worker being replaced is absent). */
  live(): PooledWorker[] {
    return this.#workers.filter((worker): worker is PooledWorker => worker?.alive === true);
  }

  /** The live worker at `index`, or an UnavailableError (it died and is being replaced). */
  worker(index: number): PooledWorker {
    const worker = this.#workers[index];
    if (!worker?.alive) throw new UnavailableError(`media worker ${index} is not available (being replaced)`);
    return worker;
  }

  /** The live worker with the lowest load (consumers + transports) among those `accept` allows; ties go to the lowest index. */
  leastLoaded(accept: (worker: PooledWorker) => boolean = () => true): PooledWorker | undefined {
    let best: PooledWorker | undefined;
    for (const worker of this.live()) {
      if (accept(worker) && (best === undefined || worker.load < best.load)) best = worker;
    }
    return best;
  }

  /** CPU seconds per live worker; also updates the CPU gauges. */
  async sampleCpu(): Promise<Map<number, number>> {
    const result = new Map<number, number>();
    await Promise.all(
      this.live().map(async (worker) => {
        try {
          result.set(worker.index, await worker.cpuSeconds());
        } catch {
          // The worker died between live() and the request: the next sample covers its replacement.
        }
      }),
    );
    return result;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const worker of this.#workers) worker?.close();
    this.#options.metrics.setWorkers(0);
    this.#options.metrics.clear(this.#workers.length);
    this.removeAllListeners();
  }

  #watch(worker: PooledWorker): void {
    worker.once('died', (error) => {
      void this.#replace(worker, error);
    });
  }

  async #replace(dead: PooledWorker, error: Error): Promise<void> {
    const { log, metrics } = this.#options;
    const index = dead.index;
    this.#workers[index] = undefined;
    metrics.workerDied();
    metrics.setWorkers(this.live().length);
    log.error(
      { workerIndex: index, pid: dead.pid, err: error.message },
      'mediasoup worker died; replacing it',
    );
    this.emit('workerDied', { workerIndex: index, pid: dead.pid, error: error.message });

    const replacement = await this.#spawn(index);
    if (!replacement) return;
    this.#workers[index] = replacement;
    this.#watch(replacement);
    metrics.setWorkers(this.live().length);

    let affectedStreamIds: string[] = [];
    try {
      affectedStreamIds = await this.#options.recover(index);
    } catch (recoverError) {
      log.error({ workerIndex: index, err: recoverError }, 'recovering streams after a worker death failed');
    }
    if (this.#closed) return;
    log.warn(
      { workerIndex: index, oldPid: dead.pid, newPid: replacement.pid, affectedStreamIds },
      'mediasoup worker replaced',
    );
    this.emit('workerReplaced', {
      oldWorkerIndex: index,
      oldPid: dead.pid,
      newPid: replacement.pid,
      affectedStreamIds,
    });
  }

  /** Starts a worker for `index`, retrying with backoff; undefined when the pool closed meanwhile. */
  async #spawn(index: number): Promise<PooledWorker | undefined> {
    for (let attempt = 0; !this.#closed; attempt++) {
      const delay = RESPAWN_BACKOFF_MS[Math.min(attempt, RESPAWN_BACKOFF_MS.length - 1)] ?? 0;
      if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay).unref());
      if (this.#closed) return undefined;
      try {
        const worker = await this.#options.mediasoup.createWorker(this.#options.settings);
        if (this.#closed) {
          worker.close();
          return undefined;
        }
        return new PooledWorker(index, worker, this.#options.metrics);
      } catch (error) {
        this.#options.log.error(
          { workerIndex: index, attempt, err: error },
          'could not start a replacement worker',
        );
      }
    }
    return undefined;
  }
}
