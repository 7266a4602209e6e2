/**
 * One mediasoup Worker in the pool, with its load counted from mediasoup's observer API, so every
 * router, transport, producer and consumer is counted whoever created it (pipe transports and pipe
 * consumers included: they cost the worker as much as a listener does).
 */
import { EventEmitter } from 'node:events';
import type { types as ms } from 'mediasoup';
import type { MediaMetrics, ObjectKind } from './metrics.js';

export type WorkerCounts = Record<ObjectKind, number>;

export interface PooledWorkerEvents {
  /** The worker process exited unexpectedly; its routers (and everything in them) are already closed. */
  died: [Error];
}

export class PooledWorker extends EventEmitter<PooledWorkerEvents> {
  readonly index: number;
  readonly worker: ms.Worker;
  readonly #counts: WorkerCounts = { routers: 0, transports: 0, producers: 0, consumers: 0 };
  readonly #metrics: MediaMetrics;

  constructor(index: number, worker: ms.Worker, metrics: MediaMetrics) {
    super();
    this.index = index;
    this.worker = worker;
    this.#metrics = metrics;
    for (const kind of Object.keys(this.#counts) as ObjectKind[]) metrics.setObjects(index, kind, 0);
    worker.on('died', (error) => this.emit('died', error));
    worker.observer.on('newrouter', (router) => {
      this.#track('routers', router.observer);
      router.observer.on('newtransport', (transport) => {
        this.#track('transports', transport.observer);
        transport.observer.on('newproducer', (producer) => this.#track('producers', producer.observer));
        transport.observer.on('newconsumer', (consumer) => this.#track('consumers', consumer.observer));
      });
    });
  }

  get pid(): number {
    return this.worker.pid;
  }

  /** False once the worker closed or died. */
  get alive(): boolean {
    return !this.worker.closed;
  }

  get died(): boolean {
    return this.worker.died;
  }

  get counts(): Readonly<WorkerCounts> {
    return this.#counts;
  }

  /** What placement compares: each consumer and each transport costs the worker about the same. */
  get load(): number {
    return this.#counts.consumers + this.#counts.transports;
  }

  /** CPU seconds (user + system) the worker process has used. */
  async cpuSeconds(): Promise<number> {
    const usage = await this.worker.getResourceUsage();
    const seconds = (usage.ru_utime + usage.ru_stime) / 1000;
    this.#metrics.setCpuSeconds(this.index, seconds);
    return seconds;
  }

  close(): void {
    this.worker.close();
  }

  #track(kind: ObjectKind, observer: { once(event: 'close', listener: () => void): unknown }): void {
    this.#counts[kind]++;
    this.#metrics.setObjects(this.index, kind, this.#counts[kind]);
    observer.once('close', () => {
      this.#counts[kind]--;
      this.#metrics.setObjects(this.index, kind, this.#counts[kind]);
    });
  }
}
