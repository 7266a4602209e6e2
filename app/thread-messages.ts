/**
 * What the supervisor (supervisor.ts) and a role thread (role-thread.ts) say to each other over
 * the thread's parentPort. The bus between roles is separate (its own MessagePort to the hub);
 * this channel is the thread's life cycle and its metrics.
 *
 * Both sides are this codebase in one process, started from the same files, so the messages are
 * typed rather than parsed: nothing here comes from outside the process.
 */
import type { MessagePort } from 'node:worker_threads';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { Config, RenderedMetrics } from '../common/index.js';

export type ThreadMetrics = MetricObjectWithValues<MetricValue<string>>[];

/** workerData of a role thread. */
export interface RoleThreadData {
  /** The thread's name in logs and metrics (`thread`): control-plane, media or edge. */
  name: string;
  /** The process's config with this thread's VEZA_ROLES (and the embedded database's URL). */
  config: Config;
  /** The service key of the whole process: the edge thread calls the control plane's gRPC with it. */
  apiKey: string;
  /** This thread's end of the thread bus (transferred). */
  bus: MessagePort;
  /** Whose PostgreSQL config.DATABASE_URL is: the supervisor's embedded one, or the operator's. */
  database: 'embedded' | 'external';
}

export type ToThread =
  /** Close this thread's roles; answer `stopped`. */
  | { type: 'stop' }
  /** This thread's registry as JSON, for the process's /metrics. */
  | { type: 'metrics'; id: number }
  /** The answer to the thread's `render`. */
  | { type: 'rendered'; id: number; metrics: RenderedMetrics }
  | { type: 'rendered'; id: number; error: string };

export type FromThread =
  | { type: 'started'; httpPort: number | null; grpcPort: number | null }
  | { type: 'stopped' }
  /** An uncaught exception: the thread logged it and waits for `stop` (supervisor.ts says why). */
  | { type: 'failed'; error: string }
  | { type: 'metrics'; id: number; metrics: ThreadMetrics }
  /** The thread serves /metrics (the edge): the whole process's, aggregated by the supervisor. */
  | { type: 'render'; id: number };
