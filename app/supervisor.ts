/**
 * Threaded standalone mode (VEZA_THREADS, the default of `npm start`): one process, one event
 * loop per role group, so a join burst on the edge does not queue behind the control plane or the
 * media node, nor they behind it.
 *
 * The main thread is this supervisor. It starts embedded PostgreSQL, runs the thread bus's hub
 * (common/ports/thread-bus-hub.ts), and starts three worker threads (role-thread.ts), each running
 * startPlatform for its roles exactly as a cluster process does:
 *
 * | thread        | roles                                       |
 * | ------------- | ------------------------------------------- |
 * | control-plane | control-plane (with retention) and worker   |
 * | media         | media: serves itself over the bus, announces itself to the control plane's registry |
 * | edge          | signaling: reaches the media node through the bus gateway, the control plane over gRPC |
 *
 * It owns the shutdown order (the edge stops taking requests first, then the media node, then the
 * control plane and the workers, the hub, and embedded PostgreSQL last) and the process's /metrics:
 * the edge's /metrics, or the ops port's when no thread runs the edge, aggregates every thread's
 * registry (thread-metrics.ts).
 *
 * A role thread that fails (an uncaught exception, or a thread that ends on its own) stops the whole
 * platform, in the same order, and `stopped` resolves with the failure; main.ts then exits 1 for the
 * process manager to restart it. Restarting the one role in place was not chosen: the others hold
 * state tied to it (the edge's sockets to the media node's transports, the control plane's
 * placements), and a clean restart of the process is what the single-loop mode gets from a crash too.
 */
import { randomBytes } from 'node:crypto';
import type { Worker } from 'node:worker_threads';
import { startEmbeddedPostgres } from '../common/db/index.js';
import {
  type Config,
  type Logger,
  metricsRegistry,
  type OpsServer,
  type ProcessRole,
  type RenderedMetrics,
  renderMetricsWith,
  startOpsServer,
  startThread,
} from '../common/index.js';
import { ThreadBusHub } from '../common/ports/index.js';
import type { FromThread, RoleThreadData, ThreadMetrics, ToThread } from './thread-messages.js';
import { aggregateThreadMetrics } from './thread-metrics.js';

/** Which roles share a thread: the worker role's jobs run in ffmpeg processes, so it costs its loop little. */
const ROLE_THREADS: readonly { name: string; roles: readonly ProcessRole[] }[] = [
  { name: 'control-plane', roles: ['control-plane', 'worker'] },
  { name: 'media', roles: ['media'] },
  { name: 'edge', roles: ['signaling'] },
];

/** The role threads run the same sources as this module: TypeScript through tsx, or built JavaScript. */
const ROLE_THREAD_ENTRY = new URL(
  import.meta.url.endsWith('.ts') ? './role-thread.ts' : './role-thread.js',
  import.meta.url,
);

/** A thread that does not answer for its metrics fails the scrape rather than hanging it. */
const METRICS_TIMEOUT_MS = 5_000;
/** How long a thread may take to close its roles before it is ended regardless. */
const STOP_GRACE_MS = 30_000;

export interface RoleThreadInfo {
  name: string;
  roles: readonly ProcessRole[];
  worker: Worker;
}

export interface ThreadedPlatform {
  config: Config;
  /** The edge's port (null without the signaling role). */
  httpPort: number | null;
  /** The control plane's gRPC port (null without the control-plane role). */
  grpcPort: number | null;
  /** /metrics, /healthz and /readyz on CONTROL_HTTP_PORT, only when no thread runs the edge. */
  opsPort: number | null;
  threads: readonly RoleThreadInfo[];
  /** Resolves once the platform has stopped: with the failure that stopped it, or null after close(). */
  stopped: Promise<Error | null>;
  /** The edge first, embedded PostgreSQL last. Idempotent. */
  close(): Promise<void>;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: Error): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Waited for only on some paths (a failure elsewhere may come first): never an unhandled rejection.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

class RoleThread implements RoleThreadInfo {
  readonly started = deferred<{ httpPort: number | null; grpcPort: number | null }>();
  private readonly stoppedMessage = deferred<void>();
  private readonly exited = deferred<number>();
  private readonly metricsWaiters = new Map<number, Deferred<ThreadMetrics>>();
  private nextMetrics = 1;
  private isStarted = false;
  private hasFailed = false;
  private stopping = false;
  private running = true;

  constructor(
    readonly name: string,
    readonly roles: readonly ProcessRole[],
    readonly worker: Worker,
    private readonly log: Logger,
    private readonly hooks: {
      /** The thread failed after it started. */
      failed(thread: RoleThread, error: Error): void;
      /** The process's metrics, for the thread's /metrics. */
      render(): Promise<RenderedMetrics>;
    },
  ) {
    worker.on('message', (message: FromThread) => this.receive(message));
    // An exception the thread could not catch itself (one while loading its modules, running out
    // of memory): it has ended.
    worker.on('error', (error) => this.fail(new Error(`the ${name} thread crashed: ${error.message}`)));
    worker.on('exit', (code) => {
      this.running = false;
      this.exited.resolve(code);
      for (const waiter of this.metricsWaiters.values()) waiter.resolve([]);
      this.metricsWaiters.clear();
      if (!this.stopping) this.fail(new Error(`the ${name} thread ended unexpectedly (exit code ${code})`));
    });
  }

  /** This thread's registry, for an aggregated /metrics; nothing once it has ended. */
  metrics(): Promise<ThreadMetrics> {
    if (!this.running) return Promise.resolve([]);
    const id = this.nextMetrics++;
    const waiter = deferred<ThreadMetrics>();
    this.metricsWaiters.set(id, waiter);
    const timer = setTimeout(() => {
      this.metricsWaiters.delete(id);
      waiter.reject(
        new Error(`the ${this.name} thread did not send its metrics within ${METRICS_TIMEOUT_MS} ms`),
      );
    }, METRICS_TIMEOUT_MS);
    this.post({ type: 'metrics', id });
    return waiter.promise.finally(() => clearTimeout(timer));
  }

  /** Closes the thread's roles (bounded), then ends the thread. Idempotent. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (!this.running) return;
    this.post({ type: 'stop' });
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.log.warn(
          { stoppingThread: this.name },
          `the ${this.name} thread did not stop in time: ending it`,
        );
        resolve();
      }, STOP_GRACE_MS);
    });
    await Promise.race([this.stoppedMessage.promise, this.exited.promise, graceOver]);
    clearTimeout(timer);
    await this.worker.terminate();
  }

  private receive(message: FromThread): void {
    switch (message.type) {
      case 'started':
        this.isStarted = true;
        this.started.resolve({ httpPort: message.httpPort, grpcPort: message.grpcPort });
        return;
      case 'failed':
        this.fail(new Error(`the ${this.name} thread failed: ${message.error}`));
        return;
      case 'stopped':
        this.stoppedMessage.resolve();
        return;
      case 'metrics':
        this.metricsWaiters.get(message.id)?.resolve(message.metrics);
        this.metricsWaiters.delete(message.id);
        return;
      case 'render':
        this.hooks.render().then(
          (metrics) => this.post({ type: 'rendered', id: message.id, metrics }),
          (error: unknown) => {
            this.log.error({ err: error }, 'could not aggregate the threads’ metrics');
            this.post({ type: 'rendered', id: message.id, error: 'metrics failed' });
          },
        );
        return;
    }
  }

  /** Once: a thread that crashes reports an `error` and then its `exit`. */
  private fail(error: Error): void {
    if (this.hasFailed) return;
    this.hasFailed = true;
    if (!this.isStarted) this.started.reject(error);
    else this.hooks.failed(this, error);
  }

  private post(message: ToThread): void {
    if (this.running) this.worker.postMessage(message);
  }
}

export async function startThreadedPlatform(config: Config, rootLog: Logger): Promise<ThreadedPlatform> {
  const log = rootLog.child({ thread: 'supervisor' });
  const closers: Array<() => Promise<void>> = [];
  const threads: RoleThread[] = [];
  const stopped = deferred<Error | null>();
  let failure: Error | null = null;
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      // Reverse start order: the edge, the media node, the control plane, the hub, PostgreSQL.
      for (const closer of closers.reverse()) {
        try {
          await closer();
        } catch (error) {
          log.error({ err: error }, 'error while shutting down');
        }
      }
      stopped.resolve(failure);
    })();
    return closing;
  };

  // A failure while starting fails the start (which closes); one afterwards closes everything.
  const startFailed = deferred<never>();
  let running = false;
  const failed = (thread: RoleThread, error: Error) => {
    if (closing) {
      log.warn(
        { err: error, failedThread: thread.name },
        'a role thread failed while the platform was stopping',
      );
      return;
    }
    if (!running) {
      startFailed.reject(error);
      return;
    }
    failure = error;
    log.error({ err: error, failedThread: thread.name }, 'a role thread failed: shutting the platform down');
    void close();
  };

  const collectMetrics = async (): Promise<RenderedMetrics> => {
    const live = [...threads];
    const [own, ...others] = await Promise.all([
      metricsRegistry().getMetricsAsJSON(),
      ...live.map((thread) => thread.metrics()),
    ]);
    const registry = aggregateThreadMetrics(
      { thread: 'supervisor', metrics: own },
      live.map((thread, index) => ({ thread: thread.name, metrics: others[index] ?? [] })),
    );
    return { contentType: registry.contentType, body: await registry.metrics() };
  };

  try {
    let databaseUrl = config.DATABASE_URL;
    if (!databaseUrl) {
      const embedded = await startEmbeddedPostgres(config.dataDir, config.EMBEDDED_PG_PORT, log);
      closers.push(embedded.stop);
      databaseUrl = embedded.url;
    }
    const hub = new ThreadBusHub();
    closers.push(() => hub.close());
    // Every thread is this process: one service key, accepted by the control plane, sent by the edge.
    const apiKey = config.SERVICE_API_KEYS[0] ?? randomBytes(32).toString('base64url');
    renderMetricsWith(collectMetrics);
    closers.push(async () => renderMetricsWith(null));

    const wanted = new Set(config.VEZA_ROLES);
    const groups = ROLE_THREADS.map((group) => ({
      name: group.name,
      roles: group.roles.filter((role) => wanted.has(role)),
    })).filter((group) => group.roles.length > 0);

    const spawn = (name: string, roles: readonly ProcessRole[], threadConfig: Partial<Config> = {}) => {
      const port = hub.connect();
      const data: RoleThreadData = {
        name,
        config: { ...config, ...threadConfig, VEZA_ROLES: [...roles], DATABASE_URL: databaseUrl },
        apiKey,
        bus: port,
        database: config.DATABASE_URL ? 'external' : 'embedded',
      };
      const worker = startThread(ROLE_THREAD_ENTRY, { workerData: data, transferList: [port] });
      const thread = new RoleThread(name, roles, worker, log, { failed, render: collectMetrics });
      threads.push(thread);
      closers.push(() => thread.stop());
      return thread;
    };

    // The control plane and the media node start side by side (the media node announces itself
    // whenever it is up; the registry asks for announcements when it starts); the edge needs the
    // control plane's gRPC port.
    const early = groups
      .filter((group) => group.name !== 'edge')
      .map((group) => spawn(group.name, group.roles));
    const earlyStarted = await Promise.race([
      Promise.all(early.map((thread) => thread.started.promise)),
      startFailed.promise,
    ]);
    const grpcPort = earlyStarted.find((started) => started.grpcPort !== null)?.grpcPort ?? null;

    let httpPort: number | null = null;
    const edgeGroup = groups.find((group) => group.name === 'edge');
    if (edgeGroup) {
      const controlPlaneAddress =
        grpcPort === null
          ? config.controlPlaneAddress
          : `${config.controlPlaneAddress.replace(/:\d+$/, '')}:${grpcPort}`;
      const edge = spawn(edgeGroup.name, edgeGroup.roles, { controlPlaneAddress });
      ({ httpPort } = await Promise.race([edge.started.promise, startFailed.promise]));
    }

    let ops: OpsServer | null = null;
    if (!edgeGroup) {
      ops = await startOpsServer(config.HTTP_HOST, config.CONTROL_HTTP_PORT, async () => true, {
        metricsToken: config.METRICS_TOKEN,
      });
      closers.push(() => ops?.close() ?? Promise.resolve());
    }

    running = true;
    log.info(
      {
        threads: threads.map((thread) => ({
          thread: thread.name,
          roles: thread.roles,
          threadId: thread.worker.threadId,
        })),
      },
      'role threads started',
    );
    return {
      config,
      httpPort,
      grpcPort,
      opsPort: ops?.port ?? null,
      threads,
      stopped: stopped.promise,
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
