/**
 * Runs tasks one at a time per key. The chat stores and publishes a room's messages through
 * it, so within this process they reach the bus in the order their ids were handed out.
 */
export class KeyedQueue {
  private readonly tails = new Map<string | number, Promise<unknown>>();

  run<T>(key: string | number, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(task, task);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }
}
