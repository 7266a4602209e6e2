/**
 * The job queues' backlog as gauges, read from the queue at scrape time: depth, age of the oldest
 * job and dead letters are what tell an operator that transcoding is stuck or failing, and only
 * the queue itself knows them (JetStream keeps them on the server, the PostgreSQL queue in a table).
 * Every process that consumes a queue reports it, so alerts take the max over processes.
 */
import type { Gauge } from 'prom-client';
import { gauge } from '../metrics.js';
import type { JobQueue } from './job-queue.js';

const watched = new Map<string, Set<JobQueue>>();

/** One scrape reads each queue once, for all three gauges. */
let reading: Promise<Map<string, Awaited<ReturnType<JobQueue['stats']>>>> | null = null;

function readAll(): Promise<Map<string, Awaited<ReturnType<JobQueue['stats']>>>> {
  reading ??= (async () => {
    const result = new Map<string, Awaited<ReturnType<JobQueue['stats']>>>();
    await Promise.all(
      [...watched].map(async ([name, queues]) => {
        const [queue] = queues;
        if (!queue) return;
        try {
          result.set(name, await queue.stats(name));
        } catch {
          // The store is down: no value rather than a stale one (the dependency alerts say why).
        }
      }),
    );
    return result;
  })().finally(() => {
    reading = null;
  });
  return reading;
}

function readInto(pick: (stats: Awaited<ReturnType<JobQueue['stats']>>) => number) {
  return async function (this: Gauge<'queue'>) {
    const all = await readAll();
    this.reset();
    for (const [name, stats] of all) this.set({ queue: name }, pick(stats));
  };
}

gauge('veza_job_queue_depth', 'Jobs waiting or running, by queue', ['queue'], {
  collect: readInto((s) => s.depth),
});
gauge(
  'veza_job_queue_oldest_age_seconds',
  'Age of the oldest job waiting or running, by queue (0 when empty)',
  ['queue'],
  { collect: readInto((s) => s.oldestAgeSeconds) },
);
gauge('veza_job_dead_letters', 'Dead letters kept, by queue', ['queue'], {
  collect: readInto((s) => s.deadLetters),
});

/** Reports `queue`'s backlog on /metrics until the returned function is called. */
export function watchJobQueue(jobs: JobQueue, queue: string): () => void {
  const set = watched.get(queue) ?? new Set<JobQueue>();
  watched.set(queue, set);
  set.add(jobs);
  return () => {
    set.delete(jobs);
    if (set.size === 0) watched.delete(queue);
  };
}
