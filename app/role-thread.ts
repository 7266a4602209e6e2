/**
 * The entry of a role thread of threaded standalone mode (supervisor.ts starts one per group of
 * roles): it runs startPlatform for its roles on its own event loop, over the thread bus, and
 * answers the supervisor's life-cycle and metrics messages (thread-messages.ts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import {
  createLogger,
  metricsRegistry,
  type RenderedMetrics,
  renderMetricsWith,
  startTracing,
  type Tracing,
} from '../common/index.js';
import { ThreadEventBus } from '../common/ports/index.js';
import { type Platform, startPlatform } from './platform.js';
import type { FromThread, RoleThreadData, ToThread } from './thread-messages.js';

const port = parentPort;
if (!port) throw new Error('app/role-thread.ts runs as a worker thread of app/supervisor.ts');
const { name, config, apiKey, bus: busPort, database } = workerData as RoleThreadData;
const tell = (message: FromThread) => port.postMessage(message);

// Synchronous writes, one line each: the threads share stdout, and a thread's last lines must be
// out before it ends (pino flushes an asynchronous stream at exit only on the main thread).
const log = createLogger({
  level: config.LOG_LEVEL,
  name: `veza-${config.VEZA_MODE}`,
  destination: pino.destination({ dest: 1, sync: true }),
}).child({ thread: name });

// An uncaught exception leaves this thread's state unknown, but ending the thread here would be
// worse: Node cannot tear down a thread whose uWebSockets.js sockets are open (the process aborts),
// and the other roles would go on without this one. So: log it, tell the supervisor, and let it
// shut the whole platform down in order, this thread's roles included.
let failed = false;
process.on('uncaughtException', (error) => {
  log.fatal({ err: error }, 'uncaught exception in a role thread: the platform shuts down');
  if (failed) return;
  failed = true;
  tell({ type: 'failed', error: error instanceof Error ? error.message : String(error) });
});

// prom-client registries are per thread: this thread's /metrics (the edge's) asks the supervisor,
// which aggregates every thread's registry.
let nextRender = 1;
const renders = new Map<number, { resolve(metrics: RenderedMetrics): void; reject(error: Error): void }>();
renderMetricsWith(
  () =>
    new Promise((resolve, reject) => {
      const id = nextRender++;
      renders.set(id, { resolve, reject });
      tell({ type: 'render', id });
    }),
);

const bus = new ThreadEventBus(busPort, { log });
// Each thread is a service of its own in a trace (veza-edge, veza-control-plane, veza-media), as
// its roles would be in cluster mode; its SDK starts before the roles wrap their clients.
const tracing: Promise<Tracing> = startTracing(config, `veza-${name}`);
const starting: Promise<Platform> = tracing.then(() =>
  startPlatform(config, log, { bus, apiKey, opsServer: false, database }),
);

port.on('message', (message: ToThread) => {
  switch (message.type) {
    case 'metrics':
      metricsRegistry()
        .getMetricsAsJSON()
        .then((metrics) => tell({ type: 'metrics', id: message.id, metrics }));
      return;
    case 'rendered': {
      const render = renders.get(message.id);
      renders.delete(message.id);
      if ('metrics' in message) render?.resolve(message.metrics);
      else render?.reject(new Error(message.error));
      return;
    }
    case 'stop':
      // A thread that failed to start has nothing to close (startPlatform closed what it opened).
      starting
        .then(
          (platform) => platform.close(),
          () => undefined,
        )
        // The spans of the last requests are exported before the thread ends.
        .then(() => tracing.then((started) => started.shutdown()))
        .catch((error: unknown) => log.warn({ err: error }, 'tracing did not shut down cleanly'))
        .then(() => tell({ type: 'stopped' }));
      return;
  }
});

starting.then(
  (platform) => tell({ type: 'started', httpPort: platform.httpPort, grpcPort: platform.grpcPort }),
  (error: unknown) => {
    log.error({ err: error }, `the ${name} thread could not start`);
    tell({ type: 'failed', error: error instanceof Error ? error.message : String(error) });
  },
);
