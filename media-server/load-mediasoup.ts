/**
 * Loads mediasoup with a worker binary that exists.
 *
 * Why this dance: mediasoup 3.12 reads MEDIASOUP_WORKER_BIN once, when its module loads, and its own
 * postinstall (which would put a binary in node_modules) cannot run here (see environment.md). Our setup
 * script builds the worker into a cache keyed by version and patch, so the variable must point there
 * before the first `import('mediasoup')` in the process, and a missing binary must say how to fix it
 * instead of failing later with a spawn ENOENT from inside a worker.
 *
 * This is the one place besides common/config.ts that touches process.env: the variable is mediasoup's
 * contract with its worker, not a setting of ours.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { UnavailableError } from '../common/contracts/index.js';

export type Mediasoup = typeof import('mediasoup');

const SETUP_SCRIPT = new URL('../common/setup/mediasoup-worker.mjs', import.meta.url);

interface SetupModule {
  mediasoupWorkerPath: () => string;
}

function isSetupModule(value: unknown): value is SetupModule {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { mediasoupWorkerPath?: unknown }).mediasoupWorkerPath === 'function'
  );
}

/** Where the setup script puts (or will put) the worker for the pinned mediasoup version and patch. */
export async function expectedWorkerPath(): Promise<string> {
  // A computed specifier: the setup script is plain .mjs (it runs before `npm ci`) and has no typings.
  const specifier: string = SETUP_SCRIPT.href;
  const setup: unknown = await import(specifier);
  if (!isSetupModule(setup))
    throw new Error(`${SETUP_SCRIPT.pathname} does not export mediasoupWorkerPath()`);
  return setup.mediasoupWorkerPath();
}

/** Throws an error that names the binary and the fix when `path` is not an executable file. */
export function assertWorkerBinary(path: string): void {
  try {
    accessSync(path, constants.X_OK);
    if (!statSync(path).isFile()) throw new Error('not a file');
  } catch {
    throw new UnavailableError(
      `mediasoup worker binary not found or not executable at ${path}: run \`npm run setup\` to build it ` +
        '(or point MEDIASOUP_WORKER_BIN at a mediasoup 3.12.16 worker)',
    );
  }
}

let loaded: Promise<Mediasoup> | undefined;

/**
 * Sets MEDIASOUP_WORKER_BIN (when unset) to the setup script's cache path, checks the binary, then
 * imports mediasoup. Memoised: the module, like the variable it read, is per process.
 */
export function loadMediasoup(): Promise<Mediasoup> {
  loaded ??= (async () => {
    const workerBin = process.env.MEDIASOUP_WORKER_BIN || (await expectedWorkerPath());
    assertWorkerBinary(workerBin);
    process.env.MEDIASOUP_WORKER_BIN = workerBin;
    const mediasoup = await import('mediasoup');
    // Someone imported mediasoup before us with another (or no) variable: its workers would spawn the wrong binary.
    if (mediasoup.workerBin !== workerBin) {
      throw new UnavailableError(
        `mediasoup was loaded before MEDIASOUP_WORKER_BIN was set (it uses ${mediasoup.workerBin}, expected ${workerBin}): ` +
          'load it through media-server only',
      );
    }
    return mediasoup;
  })().catch((error: unknown) => {
    loaded = undefined;
    throw error;
  });
  return loaded;
}
