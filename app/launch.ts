/**
 * How `npm start` and the benchmark's platform host run the platform: standalone mode with
 * VEZA_THREADS (the default) runs each role group on its own thread under a supervisor
 * (supervisor.ts); otherwise (VEZA_THREADS=false, or a cluster process) every role of the process
 * runs on its one event loop (platform.ts). Tests that reach into a running platform
 * (`platform.media`, `platform.sql`) call startPlatform directly, which is always the single loop.
 */
import { type Config, type Logger, type ProcessRole, ROLES, startTracing } from '../common/index.js';
import { startPlatform } from './platform.js';
import { startThreadedPlatform } from './supervisor.js';

export interface RunningPlatform {
  config: Config;
  httpPort: number | null;
  grpcPort: number | null;
  opsPort: number | null;
  /** Which event loop runs which roles (`main`: the single loop). */
  loops: { thread: string; roles: readonly ProcessRole[] }[];
  /** Resolves once the platform has stopped: with the failure that stopped it, or null after close(). */
  stopped: Promise<Error | null>;
  close(): Promise<void>;
}

export async function launchPlatform(config: Config, log: Logger): Promise<RunningPlatform> {
  if (config.VEZA_MODE === 'standalone' && config.VEZA_THREADS) {
    const threaded = await startThreadedPlatform(config, log);
    return {
      ...threaded,
      loops: threaded.threads.map((thread) => ({ thread: thread.name, roles: thread.roles })),
    };
  }
  // Role threads start their own tracing (role-thread.ts); this loop's roles use this one.
  const tracing = await startTracing(config, serviceNameOf(config.VEZA_ROLES));
  let platform: Awaited<ReturnType<typeof startPlatform>>;
  try {
    platform = await startPlatform(config, log);
  } catch (error) {
    await tracing.shutdown();
    throw error;
  }
  let closed: Promise<void> | undefined;
  let reportStopped: (error: null) => void = () => {};
  const stopped = new Promise<Error | null>((resolve) => {
    reportStopped = resolve;
  });
  return {
    config,
    httpPort: platform.httpPort,
    grpcPort: platform.grpcPort,
    opsPort: platform.opsPort,
    loops: [{ thread: 'main', roles: config.VEZA_ROLES }],
    stopped,
    close() {
      closed ??= platform
        .close()
        .then(() => tracing.shutdown())
        .then(() => reportStopped(null));
      return closed;
    },
  };
}

/** `veza-signaling`, `veza-control-plane`, ...: a cluster process is named after its roles (all of them: `veza`). */
function serviceNameOf(roles: readonly ProcessRole[]): string {
  if (roles.length === 1) return `veza-${roles[0]}`;
  return roles.length === ROLES.length ? 'veza' : `veza-${roles.join('+')}`;
}
