/**
 * Group commit: a room's messages accepted while its previous commit was running are stored
 * together in the next one (one transaction, one multi-row insert) and published together
 * (one bus message), so a busy room pays one PostgreSQL commit and one publish per batch
 * instead of per message, and a quiet room still commits each message at once.
 *
 * One flush runs at a time per batcher, and a flush both stores and publishes before the next
 * starts: within this process a room's events reach the bus in the order their ids were handed
 * out. The first item of an idle batcher waits for `setImmediate` only, so the requests that
 * arrived in the same turn of the event loop share its commit.
 */

interface Waiting<T, R> {
  item: T;
  resolve(result: R): void;
  reject(error: unknown): void;
}

/** Stores and publishes `items`; returns one result per item, in the same order. */
export type Flush<T, R> = (items: readonly T[]) => Promise<readonly R[]>;

export class GroupCommit<T, R> {
  readonly #flush: Flush<T, R>;
  readonly #max: number;
  #queue: Waiting<T, R>[] = [];
  #running = false;
  #scheduled = false;

  constructor(flush: Flush<T, R>, maxBatch: number) {
    this.#flush = flush;
    this.#max = maxBatch;
  }

  /** Nothing queued and nothing committing: the batcher may be forgotten. */
  get idle(): boolean {
    return !this.#running && !this.#scheduled && this.#queue.length === 0;
  }

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#running || this.#scheduled || this.#queue.length === 0) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      void this.#run();
    });
  }

  async #run(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    const batch = this.#queue.splice(0, this.#max);
    try {
      const results = await this.#flush(batch.map((waiting) => waiting.item));
      batch.forEach((waiting, index) => {
        const result = results[index];
        if (result === undefined) waiting.reject(new Error('group commit returned fewer results than items'));
        else waiting.resolve(result);
      });
    } catch (error) {
      // The whole transaction failed: nothing of the batch is stored, each send reports it.
      for (const waiting of batch) waiting.reject(error);
    } finally {
      this.#running = false;
      // What queued meanwhile goes at once: it has already waited for a whole commit.
      if (this.#queue.length > 0) void this.#run();
    }
  }
}
