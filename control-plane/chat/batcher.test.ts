import { describe, expect, it } from 'vitest';
import { GroupCommit, type Stored } from './batcher.js';

interface Gate {
  promise: Promise<void>;
  open(): void;
}

function gate(): Gate {
  let open = () => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Waits until `check` holds, turn by turn (no timers). */
async function until(check: () => boolean): Promise<void> {
  for (let turn = 0; turn < 1000 && !check(); turn++) await new Promise((resolve) => setImmediate(resolve));
  expect(check()).toBe(true);
}

describe('GroupCommit', () => {
  it("starts the next batch's commit while the previous batch publishes, and publishes in commit order", async () => {
    const log: string[] = [];
    const publishGates: Gate[] = [];
    let nextId = 1;
    const commits = new GroupCommit<string, number>(async (items): Promise<Stored<number>> => {
      const ids = items.map(() => nextId++);
      log.push(`stored ${items.join(',')}`);
      const publishGate = gate();
      publishGates.push(publishGate);
      return {
        results: ids,
        publish: async () => {
          log.push(`publishing ${items.join(',')}`);
          await publishGate.promise;
          log.push(`published ${items.join(',')}`);
        },
      };
    }, 10);

    const first = commits.submit('a');
    await until(() => log.includes('publishing a'));
    // a is stored and publishing (held open): b and c commit meanwhile, as one batch.
    const second = commits.submit('b');
    const third = commits.submit('c');
    await until(() => log.includes('stored b,c'));
    expect(log).not.toContain('publishing b,c');
    expect(commits.idle).toBe(false);

    const answered: number[] = [];
    for (const sent of [first, second, third]) void sent.then((id) => answered.push(id));
    // b,c waits for a's publish; b,c's publish may not overtake it.
    publishGates[1]?.open();
    await new Promise((resolve) => setImmediate(resolve));
    expect(log).not.toContain('publishing b,c');
    expect(answered).toEqual([]);

    publishGates[0]?.open();
    expect(await Promise.all([first, second, third])).toEqual([1, 2, 3]);
    expect(log).toEqual([
      'stored a',
      'publishing a',
      'stored b,c',
      'published a',
      'publishing b,c',
      'published b,c',
    ]);
    expect(commits.idle).toBe(true);
  });

  it("rejects a failed commit's sends only, and goes on with the next batch", async () => {
    let calls = 0;
    const commits = new GroupCommit<string, string>(async (items) => {
      calls++;
      if (calls === 1) throw new Error('the transaction failed');
      return { results: items.map((item) => `${item} stored`), publish: async () => {} };
    }, 10);
    const failed = commits.submit('a');
    await expect(failed).rejects.toThrow('the transaction failed');
    expect(await commits.submit('b')).toBe('b stored');
    expect(commits.idle).toBe(true);
  });
});
